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
	"github.com/containerflow/containerflow/internal/mounts"
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

// directStateName is the runtime's record of a directly restored container.
const directStateName = "direct-state.json"

// descriptorsName lists what fds 0-2 of the container's init were at dump
// time (the name runc uses for the same file).
const descriptorsName = "descriptors.json"

const netnsKey = "extRootNetNS"

// directState is what the runtime knows of a container runc does not.
type directState struct {
	Pid       int       `json:"pid"`
	StartTime uint64    `json:"start_time"` // /proc/PID/stat field 22: guards against pid reuse
	Created   time.Time `json:"created"`
}

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
	}
	for _, m := range cfg.Mounts {
		if m.Type == "bind" {
			opts.ExtMnt = append(opts.ExtMnt, &rpc.ExtMountMap{Key: proto.String(m.Destination), Val: proto.String(m.Destination)})
		}
	}
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
		return fmt.Errorf("checkpoint %s: %w (see %s)", d.name, err, filepath.Join(d.work.Name(), "dump.log"))
	}
	// The copiers drain what the tasks wrote; not on the frozen path. A
	// container left stopped keeps its log until it is deleted or resumed.
	if !d.opts.GetLeaveStopped() {
		go d.r.detachLog(d.name)
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
	r      *Runtime
	spec   Spec
	o      DirectOpts
	w      *criu.Worker
	files  []*os.File // passed to CRIU, closed after the restore
	logs   *pipeLogs
	work   *os.File
	root   string // the rootfs bind-mounted where CRIU wants it
	netnsF *os.File
	once   sync.Once
}

// PrepareRestore writes the bundle of s (if it is not there), creates the
// container's cgroups and mount points, bind-mounts its root, opens its
// network namespace and starts CRIU inside the cgroups, waiting.
func (r *Runtime) PrepareRestore(s Spec, o DirectOpts) (_ *Restorer, err error) {
	if err := s.Validate(); err != nil {
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
	if err := makeMountpoints(r.rootfs(s.Name), cfg.Mounts); err != nil {
		return nil, err
	}
	// CRIU wants its root to be a mount point whose parent is not
	// over-mounted; runc bind-mounts the rootfs for the same reason.
	rs.root = filepath.Join(r.BundleDir(s.Name), "criu-root")
	if err := os.MkdirAll(rs.root, 0o755); err != nil {
		return nil, err
	}
	if err := unix.Mount(r.rootfs(s.Name), rs.root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return nil, fmt.Errorf("bind rootfs of %s: %w", s.Name, err)
	}
	cgs, err := r.makeCgroups(s.Name)
	if err != nil {
		return nil, err
	}
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
	cfg, err := r.bundleConfig(s.Name)
	if err != nil {
		return res, err
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
		ExtMnt:      []*rpc.ExtMountMap{{Key: proto.String("/dev/null"), Val: proto.String("/dev/null")}},
	}
	for _, m := range cfg.Mounts {
		if m.Type == "bind" {
			opts.ExtMnt = append(opts.ExtMnt, &rpc.ExtMountMap{Key: proto.String(m.Destination), Val: proto.String(m.Source)})
		}
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
	var hookErr error
	notify := func(script string, _ int) error {
		if script == "pre-resume" && preResume != nil {
			hookErr = preResume()
		}
		return nil
	}
	pid, err := rs.w.Restore(ctx, opts, notify)
	if err != nil {
		return res, fmt.Errorf("restore %s: %w (see %s)", s.Name, err, filepath.Join(rs.o.WorkDir, "restore.log"))
	}
	res.Pid = pid
	start, err := procStartTime(pid)
	if err != nil {
		return res, fmt.Errorf("restore %s: restored init %d: %w", s.Name, pid, err)
	}
	if err := writeJSON(filepath.Join(r.BundleDir(s.Name), directStateName), directState{Pid: pid, StartTime: start, Created: time.Now().UTC()}); err != nil {
		return res, err
	}
	r.adoptLogs(s.Name, rs.logs)
	rs.logs = nil
	// CRIU restored the init as our child (it was CRIU's sibling): reap it.
	go func() {
		if p, err := os.FindProcess(pid); err == nil {
			_, _ = p.Wait()
		}
	}()
	if hookErr != nil {
		return res, &PreResumeError{Err: hookErr}
	}
	return res, nil
}

// Restored is a restored container.
type Restored struct {
	Pid int
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

// makeMountpoints creates what runc would have created in a fresh rootfs:
// a directory or file for every mount not inside a tmpfs (CRIU restores
// those with their content).
func makeMountpoints(rootfs string, ms []specs.Mount) error {
	var tmpfs []string
	for _, m := range ms {
		if m.Type == "tmpfs" {
			tmpfs = append(tmpfs, m.Destination+"/")
		}
	}
next:
	for _, m := range ms {
		for _, t := range tmpfs {
			if strings.HasPrefix(m.Destination, t) {
				continue next
			}
		}
		p := filepath.Join(rootfs, m.Destination)
		if m.Type == "bind" {
			if fi, err := os.Stat(m.Source); err == nil && !fi.IsDir() {
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					return err
				}
				f, err := os.OpenFile(p, os.O_CREATE|os.O_RDONLY, 0o644)
				if err != nil {
					return err
				}
				f.Close()
				continue
			}
		}
		if err := os.MkdirAll(p, 0o755); err != nil {
			return fmt.Errorf("mount point %s: %w", m.Destination, err)
		}
	}
	return nil
}

// cgroupV1Hierarchies are the hierarchies runc puts a container in here.
func cgroupV1Hierarchies() []string {
	ents, _ := os.ReadDir(cgroupRoot)
	var out []string
	for _, e := range ents {
		if e.IsDir() && e.Name() != "unified" {
			if _, err := os.Stat(filepath.Join(cgroupRoot, e.Name(), "cgroup.procs")); err == nil {
				out = append(out, e.Name())
			}
		}
	}
	return out
}

// runc's default device rules: create any node, use the harmless ones.
var allowedDevices = []string{"c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
	"c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm", "c 10:200 rwm"}

// makeCgroups creates the container's cgroups as runc would (cgroup v1)
// and returns their directories.
func (r *Runtime) makeCgroups(name string) ([]string, error) {
	var dirs []string
	for _, h := range cgroupV1Hierarchies() {
		d := filepath.Join(cgroupRoot, h, r.cgroupsPath(name))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("cgroup %s: %w", d, err)
		}
		switch h {
		case "cpuset":
			// A new cpuset has no CPUs and no memory nodes until given some.
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if err := inheritCgroupFile(d, f); err != nil {
					return nil, err
				}
			}
		case "devices":
			if err := os.WriteFile(filepath.Join(d, "devices.deny"), []byte("a"), 0); err != nil {
				return nil, err
			}
			for _, rule := range allowedDevices {
				if err := os.WriteFile(filepath.Join(d, "devices.allow"), []byte(rule), 0); err != nil {
					return nil, fmt.Errorf("device rule %q: %w", rule, err)
				}
			}
		}
		dirs = append(dirs, d)
	}
	if len(dirs) == 0 {
		return nil, errors.New("no cgroup v1 hierarchy found")
	}
	return dirs, nil
}

// inheritCgroupFile copies file from the nearest ancestor that has it set,
// down to d.
func inheritCgroupFile(d, file string) error {
	if b, err := os.ReadFile(filepath.Join(d, file)); err == nil && strings.TrimSpace(string(b)) != "" {
		return nil
	}
	parent := filepath.Dir(d)
	if err := inheritCgroupFile(parent, file); err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(parent, file))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(d, file), b, 0)
}

func nsInode(pid int, ns string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, ns), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// procStartTime is field 22 of /proc/PID/stat (after the parenthesised
// command, which may contain spaces).
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, errors.New("bad stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, errors.New("bad stat")
	}
	var v uint64
	_, err = fmt.Sscan(f[19], &v)
	return v, err
}

// procState is field 3 of /proc/PID/stat ("R", "S", "Z", ...).
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+3 > len(b) {
		return ""
	}
	return string(b[i+2 : i+3])
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// readDirect returns the runtime's record of a directly restored
// container, if it has one.
func (r *Runtime) readDirect(name string) (directState, bool) {
	var d directState
	b, err := os.ReadFile(filepath.Join(r.BundleDir(name), directStateName))
	if err != nil || json.Unmarshal(b, &d) != nil {
		return d, false
	}
	return d, true
}

// directStatus says whether the recorded init still runs.
func (r *Runtime) directStatus(name string, d directState) string {
	if st, err := procStartTime(d.Pid); err != nil || st != d.StartTime || procState(d.Pid) == "Z" {
		return "stopped"
	}
	if f, v2, err := r.freezerFile(name); err == nil {
		b, _ := os.ReadFile(f)
		if (!v2 && strings.TrimSpace(string(b)) == "FROZEN") || (v2 && strings.TrimSpace(string(b)) == "1") {
			return "paused"
		}
	}
	return "running"
}

// ResumeStopped continues a container a dump left stopped
// (DirectOpts.LeaveStopped). The caller first takes its sockets out of
// repair mode and lifts the network lock.
func (r *Runtime) ResumeStopped(name string) error {
	pids, err := r.cgroupPids(name)
	if err != nil {
		return err
	}
	if len(pids) == 0 {
		return fmt.Errorf("%w: %s has no tasks left", ErrNotFound, name)
	}
	var errs []error
	for _, p := range pids {
		if err := unix.Kill(p, unix.SIGCONT); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// cgroupPids lists the tasks of the container's freezer cgroup.
func (r *Runtime) cgroupPids(name string) ([]int, error) {
	f, _, err := r.freezerFile(name)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(f), "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, s := range strings.Fields(string(b)) {
		var p int
		if _, err := fmt.Sscan(s, &p); err == nil {
			pids = append(pids, p)
		}
	}
	return pids, nil
}

// RestoredDirectly says whether the direct engine restored the container
// (runc does not know it).
func (r *Runtime) RestoredDirectly(name string) bool {
	_, ok := r.readDirect(name)
	return ok
}

// removeDirect forgets a directly restored container; the caller removes
// its tasks (with its cgroups) and bundle.
func (r *Runtime) removeDirect(name string) {
	_ = os.Remove(filepath.Join(r.BundleDir(name), directStateName))
	_ = mounts.RemoveAll(filepath.Join(r.BundleDir(name), "criu-root"))
}

// Reference is a bare checkpoint and restore of a container on its own
// host: CRIU started for each (as `criu dump` and `criu restore` would be),
// no transfer, no network steps. A migration's time to ready is held
// against it (docs/migration.md).
type Reference struct {
	Dump    time.Duration `json:"dump_ns"`    // freeze + CRIU start + dump
	Restore time.Duration `json:"restore_ns"` // CRIU start + restore
}

// CheckpointRestoreInPlace measures the Reference of a running container,
// which goes on running from the restored copy. A failed dump thaws it; a
// failed restore loses it (as a failed restore of a migration would,
// without a rollback).
func (r *Runtime) CheckpointRestoreInPlace(ctx context.Context, s Spec, dir string) (Reference, error) {
	var ref Reference
	o := DirectOpts{ImagesDir: filepath.Join(dir, "images"), WorkDir: filepath.Join(dir, "work")}
	t0 := time.Now()
	if err := r.Freeze(s.Name, 5*time.Second); err != nil {
		return ref, err
	}
	d, err := r.PrepareDump(ctx, s.Name, o)
	if err == nil {
		err = d.Dump(ctx)
	}
	if err != nil {
		_ = r.Thaw(s.Name)
		return ref, err
	}
	t1 := time.Now()
	o.WorkDir = filepath.Join(dir, "work-restore")
	rs, err := r.PrepareRestore(s, o)
	if err != nil {
		return ref, err
	}
	if _, err := rs.Restore(ctx, nil); err != nil {
		return ref, err
	}
	ref.Dump, ref.Restore = t1.Sub(t0), time.Since(t1)
	return ref, nil
}

// MemoryBytes is the container's anonymous memory (what a checkpoint must
// copy), from its memory cgroup.
func (r *Runtime) MemoryBytes(name string) (int64, error) {
	for _, f := range []struct{ path, key string }{
		{filepath.Join(cgroupRoot, "memory", r.cgroupsPath(name), "memory.stat"), "total_rss"},
		{filepath.Join(cgroupRoot, r.cgroupsPath(name), "memory.stat"), "anon"},
	} {
		b, err := os.ReadFile(f.path)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, " "); ok && k == f.key {
				var n int64
				_, err := fmt.Sscan(v, &n)
				return n, err
			}
		}
	}
	return 0, fmt.Errorf("%w: no memory cgroup for %s", ErrNotFound, name)
}
