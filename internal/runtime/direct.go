package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/checkpoint-restore/go-criu/v7/rpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/containerflow/containerflow/internal/criu"
	"github.com/containerflow/containerflow/internal/pki"
)

// The direct engine checkpoints and restores containers by driving CRIU
// over its RPC instead of exec'ing `runc checkpoint` and `runc restore`.
// It does what runc does around CRIU (external mounts and network
// namespace, stdio pipes, the rootfs as a mount point, cgroups), but splits
// each operation in two: Prepare* does everything that does not need the
// container frozen — CRIU started and waiting, namespaces opened, cgroups
// and mount points made — so the frozen part is CRIU's own work and
// nothing else.
//
// A container restored this way is not known to runc: the runtime keeps
// its own record (directStateName in the bundle: init pid and start time)
// and State, List, Signal, Pids, Delete and the next checkpoint use it.
// runc still creates every container.

// descriptorsName lists what fds 0-2 of the container's init were at dump
// time (the name runc uses for the same file).
const descriptorsName = "descriptors.json"

const netnsKey = "extRootNetNS"

// DirectOpts are the CRIU settings of the direct engine.
type DirectOpts struct {
	ImagesDir string // CRIU's images (and nothing else)
	WorkDir   string // CRIU's log
	// LogLevel is CRIU's log level (1-4); 0 means 4, runc's choice:
	// every step timestamped, for profiling and post-mortems (measured
	// within noise of level 2 here).
	LogLevel int32
	// Nice is CRIU's nice value (0: inherited); see criu.WorkerOpts.
	Nice int
	// HostNetns is the network namespace CRIU runs in ("": the caller's):
	// where a post-copy page server listens and its client connects from.
	HostNetns string
	// PageServerPort makes a dump post-copy (source side): CRIU writes
	// everything but the memory, then serves the pages on this TCP port
	// until the destination has them all. See postcopy.go.
	PageServerPort int
	// PageServer makes a restore post-copy (destination side): the
	// source's page server, "host:port".
	PageServer string
	// PageServerTLS, when set, makes the post-copy page server and its
	// client speak mutual TLS (CRIU's own, GnuTLS) with these files: the
	// client checks the server's certificate against the address it
	// dials, the server that the client's chains to the CA.
	PageServerTLS *pki.Files
	// LeaveStopped makes a dump leave the tasks stopped (SIGSTOP) instead
	// of killing them: killing a multi-threaded container and waiting for
	// it is ~10 ms of the frozen window here, and a stopped container can
	// be resumed in place if the migration fails (ResumeStopped), where a
	// killed one must be restored from its images. Delete removes it.
	LeaveStopped bool
	// NetworkLocked says the caller has locked the container's network
	// namespace itself before the dump (over netlink, in about a
	// millisecond), so CRIU skips its own lock (libnftables: 10-20 ms of
	// the frozen window here).
	NetworkLocked bool
}

func (o DirectOpts) level() *int32 {
	if o.LogLevel == 0 {
		return proto.Int32(4)
	}
	return proto.Int32(o.LogLevel)
}

func (r *Runtime) bundleConfig(name string) (*specs.Spec, error) {
	b, err := os.ReadFile(filepath.Join(r.BundleDir(name), "config.json"))
	if err != nil {
		return nil, fmt.Errorf("%w: bundle of %s: %v", ErrNotFound, name, err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("bundle of %s: %w", name, err)
	}
	return &s, nil
}

// bindMounts maps each bind mount of the container, by its place in the
// container, to what CRIU should find there: at a dump the place itself
// (an external mount), at a restore the host path to bind.
func bindMounts(cfg *specs.Spec, target func(specs.Mount) string) []*rpc.ExtMountMap {
	var out []*rpc.ExtMountMap
	for _, m := range cfg.Mounts {
		if m.Type == "bind" {
			out = append(out, &rpc.ExtMountMap{Key: proto.String(m.Destination), Val: proto.String(target(m))})
		}
	}
	return out
}

func (r *Runtime) rootfs(name string) string { return filepath.Join(r.BundleDir(name), "rootfs") }

// Dumper is a dump prepared while the container runs.
type Dumper struct {
	r     *Runtime
	name  string
	netns string // where CRIU runs (its page server, in post-copy)
	w     *criu.Worker
	work  *os.File
	opts  *rpc.CriuOpts
	pid   int
}

// PrepareDump starts CRIU and computes its request for container name, so
// Dump only has to send it. Close releases it if Dump is never called.
func (r *Runtime) PrepareDump(ctx context.Context, name string, o DirectOpts) (*Dumper, error) {
	st, err := r.State(ctx, name)
	if err != nil {
		return nil, err
	}
	if st.Status != "running" && st.Status != "paused" {
		return nil, fmt.Errorf("dump %s: container is %s", name, st.Status)
	}
	cfg, err := r.bundleConfig(name)
	if err != nil {
		return nil, err
	}
	netns, err := nsInode(st.Pid, "net")
	if err != nil {
		return nil, err
	}
	for _, d := range []string{o.ImagesDir, o.WorkDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	work, err := os.Open(o.WorkDir)
	if err != nil {
		return nil, err
	}
	opts := &rpc.CriuOpts{
		ImagesDirFd:     proto.Int32(-1), // required by the protocol; -1 selects ImagesDir
		ImagesDir:       proto.String(o.ImagesDir),
		WorkDirFd:       proto.Int32(int32(work.Fd())),
		LogLevel:        o.level(),
		LogFile:         proto.String("dump.log"),
		Pid:             proto.Int32(int32(st.Pid)),
		Root:            proto.String(r.rootfs(name)),
		TcpEstablished:  proto.Bool(true),
		FileLocks:       proto.Bool(true),
		OrphanPtsMaster: proto.Bool(true),
		NetworkLock:     rpc.CriuNetworkLockMethod_NFTABLES.Enum(),
		External:        []string{fmt.Sprintf("net[%d]:%s", netns, netnsKey)},
		// The restore puts the tasks into cgroups made for them (they
		// inherit CRIU's): dumping every cgroup property (~60 files,
		// 10-25 ms here) would be work for nothing.
		ManageCgroupsMode: rpc.CriuCgMode_IGNORE.Enum(),
	}
	if o.NetworkLocked {
		opts.NetworkLock = rpc.CriuNetworkLockMethod_SKIP.Enum()
	}
	if f, _, err := r.freezerFile(name); err == nil {
		opts.FreezeCgroup = proto.String(filepath.Dir(f))
	}
	if o.LeaveStopped {
		opts.LeaveStopped = proto.Bool(true)
	}
	if o.PageServerPort > 0 {
		// The address is not taken from the request in lazy mode: the
		// page server listens on every address of the agent's namespace.
		opts.LazyPages = proto.Bool(true)
		opts.Ps = &rpc.CriuPageServerInfo{Port: proto.Int32(int32(o.PageServerPort))}
		opts.NotifyScripts = proto.Bool(true) // for "status-ready"
		if t := o.PageServerTLS; t != nil {
			opts.Tls, opts.TlsCacert, opts.TlsCert, opts.TlsKey = proto.Bool(true), proto.String(t.CA), proto.String(t.Cert), proto.String(t.Key)
		}
	}
	opts.ExtMnt = bindMounts(cfg, func(m specs.Mount) string { return m.Destination })
	if cfg.Linux != nil {
		for _, p := range cfg.Linux.MaskedPaths {
			if fi, err := os.Stat(fmt.Sprintf("/proc/%d/root%s", st.Pid, p)); err == nil && !fi.IsDir() {
				opts.ExtMnt = append(opts.ExtMnt, &rpc.ExtMountMap{Key: proto.String(p), Val: proto.String("/dev/null")})
			}
		}
	}
	w, err := r.criu.StartWorker(criu.WorkerOpts{Nice: o.Nice, Netns: o.HostNetns})
	if err != nil {
		work.Close()
		return nil, err
	}
	return &Dumper{r: r, name: name, netns: o.HostNetns, w: w, work: work, opts: opts, pid: st.Pid}, nil
}

// Dump checkpoints the (frozen) container: on success its tasks are gone
// and its network namespace stays locked by CRIU.
func (d *Dumper) Dump(ctx context.Context) error {
	defer d.Close()
	if err := d.writeDescriptors(); err != nil {
		return err
	}
	if err := d.w.Dump(ctx, d.opts, nil); err != nil {
		return criu.Failed("checkpoint "+d.name, err, filepath.Join(d.work.Name(), "dump.log"))
	}
	// The copiers drain what the tasks wrote; not on the frozen path. A
	// container left stopped keeps its log until it is deleted or resumed.
	if !d.opts.GetLeaveStopped() {
		d.r.detachLogLater(d.name)
	}
	return nil
}

// writeDescriptors records what fds 0-2 of the init are, for the restore
// to give it new stdio pipes in their place.
func (d *Dumper) writeDescriptors() error {
	fds := make([]string, 3)
	for i := range fds {
		fds[i], _ = os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", d.pid, i))
	}
	b, _ := json.Marshal(fds)
	return os.WriteFile(filepath.Join(d.opts.GetImagesDir(), descriptorsName), b, 0o600)
}

// Close releases a dump that was not run.
func (d *Dumper) Close() {
	d.w.Close()
	d.work.Close()
}

// Restorer is a restore prepared before the images have arrived.
type Restorer struct {
	r         *Runtime
	spec      Spec
	o         DirectOpts
	w         *criu.Worker
	files     []*os.File // passed to CRIU, closed after the restore
	logs      *pipeLogs
	work      *os.File
	root      string // the rootfs bind-mounted where CRIU wants it
	netnsF    *os.File
	binds     []*rpc.ExtMountMap // the container's bind mounts, from its bundle
	cgs       []string           // its cgroups (the CPU limit comes after the restore)
	once      sync.Once
	ymu       sync.Mutex
	yards     *criu.YardWatch // nil where fanotify cannot watch /tmp
	requested bool            // Restore sent CRIU its request: it deals with the yard
	// PostResume, if set, runs at CRIU's post-resume notification: the
	// tasks run, and from here the restore counts as done even if CRIU
	// then dies (see Restore).
	PostResume func()
	// OnResumed, if set, runs after PostResume (fault tests kill CRIU
	// there).
	OnResumed func()
}

// CRIUPid is the process of the CRIU that restores (for fault tests).
func (rs *Restorer) CRIUPid() int { return rs.w.Pid() }

// PrepareRestore writes the bundle of s (if it is not there), creates the
// container's cgroups and mount points, bind-mounts its root, opens its
// network namespace and starts CRIU inside the cgroups, waiting.
func (r *Runtime) PrepareRestore(s Spec, o DirectOpts) (_ *Restorer, err error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if err := r.setLogConfig(s.Name, s.Log); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(r.BundleDir(s.Name), "config.json")); err != nil {
		if err := r.freshBundle(s); err != nil {
			return nil, err
		}
	}
	cfg, err := r.bundleConfig(s.Name)
	if err != nil {
		return nil, err
	}
	rs := &Restorer{r: r, spec: s, o: o}
	defer func() {
		if err != nil {
			rs.Close()
		}
	}()
	for _, d := range []string{o.ImagesDir, o.WorkDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	if rs.work, err = os.Open(o.WorkDir); err != nil {
		return nil, err
	}
	// Read now, not while the container is frozen.
	rs.binds = bindMounts(cfg, func(m specs.Mount) string { return m.Source })
	// CRIU wants its root to be a mount point whose parent is not
	// over-mounted; runc bind-mounts the rootfs for the same reason.
	rs.root = filepath.Join(r.BundleDir(s.Name), "criu-root")
	if err := os.MkdirAll(rs.root, 0o755); err != nil {
		return nil, err
	}
	// An image root is mounted by Restore, once its writable layer (and
	// the mount points runc made in it) has arrived.
	if s.RootfsLower == "" {
		if err := makeMountpoints(r.rootfs(s.Name), cfg.Mounts); err != nil {
			return nil, err
		}
		if err := unix.Mount(r.rootfs(s.Name), rs.root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return nil, fmt.Errorf("bind rootfs of %s: %w", s.Name, err)
		}
	}
	cgs, err := r.makeCgroups(s)
	if err != nil {
		return nil, err
	}
	rs.cgs = cgs
	if rs.netnsF, err = os.Open(s.Netns); err != nil {
		return nil, fmt.Errorf("network namespace of %s: %w", s.Name, err)
	}
	if rs.logs, err = r.openPipeLogs(s.Name); err != nil {
		return nil, err
	}
	rs.files = []*os.File{rs.netnsF, rs.logs.outW, rs.logs.errW}
	if rs.w, err = r.criu.StartWorker(criu.WorkerOpts{Files: rs.files, Cgroups: cgs, Nice: o.Nice, Netns: o.HostNetns}); err != nil {
		return nil, err
	}
	// Watched before the request: a CRIU killed in the restore leaves
	// its mount directory behind (see criu.WatchYards).
	rs.yards, _ = criu.WatchYards(rs.w.Pid())
	return rs, nil
}

// Restore brings the container up from the images. preResume runs at
// CRIU's pre-resume step — everything rebuilt, no instruction of the
// container run yet — and its error is only reported: CRIU resumes the
// container anyway. With DirectOpts.PageServer the restore is post-copy:
// the container runs before its memory has arrived, and Restored.Pages
// follows the rest.
func (rs *Restorer) Restore(ctx context.Context, preResume func() error) (res Restored, err error) {
	defer rs.Close()
	s, r := rs.spec, rs.r
	if s.RootfsLower != "" {
		if err := r.mountImageRoot(s, rs.root); err != nil {
			return res, err
		}
	}
	opts := &rpc.CriuOpts{
		ImagesDirFd:       proto.Int32(-1),
		ImagesDir:         proto.String(rs.o.ImagesDir),
		WorkDirFd:         proto.Int32(int32(rs.work.Fd())),
		LogLevel:          rs.o.level(),
		LogFile:           proto.String("restore.log"),
		Root:              proto.String(rs.root),
		RstSibling:        proto.Bool(true),
		EvasiveDevices:    proto.Bool(true),
		ManageCgroupsMode: rpc.CriuCgMode_IGNORE.Enum(), // the tasks inherit CRIU's cgroups, the container's
		NotifyScripts:     proto.Bool(true),
		TcpEstablished:    proto.Bool(true),
		FileLocks:         proto.Bool(true),
		OrphanPtsMaster:   proto.Bool(true),
		// The namespace is already locked (by the agent on a destination,
		// by the dump's lock on a source rolling back): CRIU locking and
		// unlocking it again is time with the container stopped.
		NetworkLock: rpc.CriuNetworkLockMethod_SKIP.Enum(),
		InheritFd:   []*rpc.InheritFd{{Key: proto.String(netnsKey), Fd: proto.Int32(criu.FirstFileFD)}},
		ExtMnt:      append([]*rpc.ExtMountMap{{Key: proto.String("/dev/null"), Val: proto.String("/dev/null")}}, rs.binds...),
	}
	var fds []string
	if b, err := os.ReadFile(filepath.Join(rs.o.ImagesDir, descriptorsName)); err == nil {
		_ = json.Unmarshal(b, &fds)
	}
	for i, key := range fds {
		// stdout and stderr become fresh pipes into the log; anything
		// else (stdin is an empty pipe) CRIU restores as it was.
		if i >= 1 && i <= 2 && strings.HasPrefix(key, "pipe:") {
			opts.InheritFd = append(opts.InheritFd, &rpc.InheritFd{Key: proto.String(key), Fd: proto.Int32(int32(criu.FirstFileFD + i))})
		}
	}
	if rs.o.PageServer != "" {
		if res.Pages, err = r.startLazyPages(rs.o); err != nil {
			return res, fmt.Errorf("restore %s: %w", s.Name, err)
		}
		opts.LazyPages = proto.Bool(true)
		defer func() {
			// A failed pre-resume callback is no failed restore: the
			// container runs and needs its pages.
			var pre *PreResumeError
			if err != nil && !errors.As(err, &pre) {
				res.Pages.Abort()
				res.Pages = nil
			}
		}()
	}
	var (
		hookErr error
		root    int  // the restored init, from CRIU's notifications
		resumed bool // CRIU let the tasks run
	)
	notify := func(script string, pid int) error {
		switch script {
		case "setup-namespaces", "post-restore":
			root = pid
		case "pre-resume":
			if preResume != nil {
				hookErr = preResume()
			}
		case "post-resume":
			resumed = true
			if root > 0 {
				// Before the namespace opens (PostResume): an agent that
				// dies from here on leaves a container its next run adopts,
				// not debris it removes under the clients (docs/soak.md,
				// finding 14). Restore writes it again once CRIU is done.
				_ = r.recordInit(s.Name, root)
			}
			if rs.PostResume != nil {
				rs.PostResume()
			}
			if rs.OnResumed != nil {
				rs.OnResumed()
			}
		}
		return nil
	}
	rs.ymu.Lock()
	rs.requested = true
	rs.ymu.Unlock()
	pid, err := rs.w.Restore(ctx, opts, notify)
	if err != nil {
		// CRIU has exited; killed, it left its mount directory behind.
		if yerr := rs.dropYards(true); yerr != nil {
			err = fmt.Errorf("%w (its mount directory is left: %v)", err, yerr)
		}
	} else {
		_ = rs.dropYards(false)
	}
	if err != nil && resumed && root > 0 {
		// CRIU died (or was cut off) after the container resumed: it runs,
		// its clients may already have talked to it, and failing the
		// restore would kill it under them. Only CRIU's answer was lost.
		if _, _, perr := procStat(root); perr == nil {
			res.CRIULost, pid, err = err, root, nil
		}
	}
	if err != nil {
		return res, criu.Failed("restore "+s.Name, err, filepath.Join(rs.o.WorkDir, "restore.log"))
	}
	res.Pid = pid
	if err := r.recordInit(s.Name, pid); err != nil {
		return res, fmt.Errorf("restore %s: %w", s.Name, err)
	}
	r.adoptLogs(s.Name, rs.logs)
	rs.logs = nil
	// CRIU restored the init as our child (it was CRIU's sibling): reap it.
	r.Watch(s.Name, pid)
	// Not a failed restore: the container runs (and may be live); the
	// caller says that its limit is missing.
	res.LimitErr = setCPULimit(rs.cgs, s.Resources)
	if hookErr != nil {
		return res, &PreResumeError{Err: hookErr}
	}
	return res, nil
}

// recordInit makes a restored container this runtime's (List, State,
// Delete know it by its init).
func (r *Runtime) recordInit(name string, pid int) error {
	_, start, err := procStat(pid)
	if err != nil {
		return fmt.Errorf("restored init %d: %w", pid, err)
	}
	return writeJSON(filepath.Join(r.BundleDir(name), directStateName), directState{Pid: pid, StartTime: start, Created: time.Now().UTC()})
}

// dropYards stops watching for CRIU's mount directory and, with remove
// (CRIU has exited), removes the one it left: found by the watch or, where
// there is none, named in its log.
func (rs *Restorer) dropYards(remove bool) error {
	rs.ymu.Lock()
	defer rs.ymu.Unlock()
	y := rs.yards
	rs.yards = nil
	if !remove {
		if y != nil {
			y.Close()
		}
		return nil
	}
	var err error
	if y != nil {
		_, err = y.Remove()
	}
	if _, lerr := criu.RemoveMountYard(filepath.Join(rs.o.WorkDir, "restore.log")); err == nil {
		err = lerr
	}
	return err
}

// Restored is a restored container.
type Restored struct {
	Pid int
	// LimitErr: the container's CPU limit could not be applied after the
	// restore (it runs without).
	LimitErr error
	// CRIULost: CRIU failed after the container had resumed; the
	// container runs (this is what CRIU said).
	CRIULost error
	// Pages, in post-copy, is the transfer of the memory still under way
	// (nil otherwise).
	Pages *PostCopy
}

// PreResumeError says the restore succeeded but the pre-resume callback
// failed; the container runs.
type PreResumeError struct{ Err error }

func (e *PreResumeError) Error() string { return "pre-resume: " + e.Err.Error() }
func (e *PreResumeError) Unwrap() error { return e.Err }

// Close undoes what PrepareRestore did and Restore did not consume: it
// stops CRIU and unmounts the root. The bundle and cgroups stay (Delete
// removes them).
func (rs *Restorer) Close() {
	rs.once.Do(func() {
		if rs.w != nil {
			rs.w.Close()
			// A CRIU that never got its request made no directory; one
			// that did is dealt with by Restore when CRIU has answered or
			// died (an abort kills it under Restore).
			rs.ymu.Lock()
			requested := rs.requested
			rs.ymu.Unlock()
			if !requested {
				_ = rs.dropYards(false)
			}
		}
		if rs.root != "" {
			_ = unix.Unmount(rs.root, unix.MNT_DETACH)
			_ = os.Remove(rs.root)
		}
		for _, f := range []*os.File{rs.work, rs.netnsF} {
			if f != nil {
				f.Close()
			}
		}
		if rs.logs != nil {
			rs.logs.close()
		}
	})
}
