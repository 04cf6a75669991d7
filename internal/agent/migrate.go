package agent

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/containerflow/containerflow/internal/cnet"
	"github.com/containerflow/containerflow/internal/criu"
	"github.com/containerflow/containerflow/internal/nsrun"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/containerflow/containerflow/internal/migration"
	"github.com/containerflow/containerflow/internal/migration/handoff"
	"github.com/containerflow/containerflow/internal/migration/transfer"
	"github.com/containerflow/containerflow/internal/mounts"
	"github.com/containerflow/containerflow/internal/runtime"
)

// MigrateRequest asks the source agent to move a container.
type MigrateRequest struct {
	To string `json:"to"` // destination host name (a peer)
	// QuiesceSignal (e.g. 12 for SIGUSR2) is sent before the freeze and
	// again after the move; 0 sends nothing.
	QuiesceSignal int `json:"quiesce_signal,omitempty"`
	// DrainTimeoutMs bounds the wait for send queues to empty before the
	// freeze; 0 skips the wait.
	DrainTimeoutMs int `json:"drain_timeout_ms,omitempty"`
	// NoHandoff turns off catching clients' frames during the freeze and
	// sending them on to the destination (see package handoff); for
	// comparisons.
	NoHandoff bool `json:"no_handoff,omitempty"`
	// Engine checkpoints and restores: "direct" (CRIU driven over its RPC,
	// the default) or "runc" (`runc checkpoint` / `runc restore`, the
	// baseline).
	Engine string `json:"engine,omitempty"`
	// NoPriority runs CRIU at the host's ordinary priority instead of
	// MigrationNice; for comparisons.
	NoPriority bool `json:"no_priority,omitempty"`
	// Mode is "auto" (the default: post-copy from PostCopyThreshold of
	// memory up, when the host can), "stop-and-copy" or "post-copy".
	Mode string `json:"mode,omitempty"`
	// Compress packs the image stream on the wire: "" or "none", or
	// "zstd" (for slow links between hosts).
	Compress string `json:"compress,omitempty"`
	// Transport between the agents: "" (TLS when the agents have
	// certificates) or "plain", over the agents' --insecure plain
	// listeners; for comparisons (cflow bench migrate --compare-tls).
	Transport string `json:"transport,omitempty"`
}

// TransportPlain asks a migration to go over the agents' plain listeners.
const TransportPlain = "plain"

// ModeAuto lets the agent choose between the migration modes.
const ModeAuto = "auto"

// PostCopyThreshold is the container memory from which "auto" migrates
// post-copy: below it the whole image crosses faster than post-copy's
// extra steps (the lazy-pages daemon, page faults over the network) pay
// back; docs/migration.md has the measurements.
const PostCopyThreshold = 64 << 20

// PostCopyTimeout bounds how long the destination may take to fetch the
// last page; past it the post-copy is declared failed.
const PostCopyTimeout = 5 * time.Minute

// MigrationNice is the nice value of the direct engine's CRIU on both
// sides: on a loaded host the frozen window is CRIU's work, and it must
// not queue behind the host's other processes. (The restored tasks get
// their own priority back: CRIU restores it with them.)
const MigrationNice = -10

// Migration engines.
const (
	EngineDirect = "direct"
	EngineRunc   = "runc"
)

// engine checks a requested engine; "" is the default, direct.
func engine(name string) (string, error) {
	switch name {
	case "":
		return EngineDirect, nil
	case EngineDirect, EngineRunc:
		return name, nil
	}
	return "", fmt.Errorf("%w: engine %q (direct or runc)", ErrBadRequest, name)
}

// PrepareRequest pre-stages an incoming container on the destination.
type PrepareRequest struct {
	Spec         ContainerSpec `json:"spec"`
	ResumeSignal int           `json:"resume_signal,omitempty"`
	From         string        `json:"from"`
	Engine       string        `json:"engine,omitempty"`
	Nice         int           `json:"nice,omitempty"`
	// PageServerPort, for a post-copy migration, is where the source
	// serves the pages (on the address it sends this request from).
	PageServerPort int `json:"page_server_port,omitempty"`
	// Compress is how the image stream will be packed.
	Compress string `json:"compress,omitempty"`
}

type incoming struct {
	resumeSignal int
	dir          string
	engine       string
	restorer     *runtime.Restorer  // direct engine: CRIU waiting for the images
	pageServer   string             // post-copy: the source's page server, host:port
	busy         chan struct{}      // closed when the image stream's handler returns
	cancel       context.CancelFunc // stops that handler (an abort)
	live         bool               // go-live began: the restore runs to its end
	stopped      bool               // stopped before go-live: it must not begin
	outcome      *restoreOutcome    // the handler's result, once it returned
	nonce        string             // the runc engine's go-live hook credential ("" without a hook)
	switched     bool               // the address was taken inside the restore
	switchTook   time.Duration      // how long steering took there
	compress     string             // of the image stream
	from         string             // the source host
	plain        bool               // it called over its plain listener
	// catch, set when the go-live opened UDP only, holds the clients' TCP
	// frames reaching this host until the tasks resume (goLiveTCP).
	catch *handoff.Catcher
}

// faults lets tests break a migration at a chosen point, on the real path.
type faults struct {
	cutStreamAt int64  // close the image stream after this many bytes (0: off)
	corruptAt   int64  // flip one byte at this offset of the stream (0: off)
	afterFreeze func() // runs with the container frozen
	afterGoLive func() // runs on a destination once it took the address
}

// Migrate moves a container to another host and returns its timing record.
// A second request for a container that is already migrating is refused
// with ErrConflict.
func (a *Agent) Migrate(ctx context.Context, name string, req MigrateRequest) (*migration.Record, error) {
	if req.To == a.cfg.Name {
		return nil, fmt.Errorf("%w: %s is already on %s", ErrBadRequest, name, req.To)
	}
	if _, ok := a.cfg.Peers[req.To]; !ok {
		return nil, fmt.Errorf("%w: unknown destination host %q", ErrNotFound, req.To)
	}
	if req.Transport != "" && req.Transport != TransportPlain && req.Transport != "tls" {
		return nil, fmt.Errorf("%w: transport %q (tls or plain)", ErrBadRequest, req.Transport)
	}
	peer, err := a.peerClient(req.To, req.Transport == TransportPlain)
	if err != nil {
		return nil, err
	}
	if req.QuiesceSignal < 0 || req.QuiesceSignal > 64 || req.DrainTimeoutMs < 0 {
		return nil, fmt.Errorf("%w: quiesce_signal must be 0-64 and drain_timeout_ms >= 0", ErrBadRequest)
	}
	if req.Engine, err = engine(req.Engine); err != nil {
		return nil, err
	}
	if err := transfer.CheckCompression(req.Compress); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if req.Compress == "none" {
		req.Compress = transfer.CompressNone
	}
	if req.Engine == EngineRunc && a.rt.RestoredDirectly(name) {
		return nil, fmt.Errorf("%w: container %s was restored by the direct engine and runc does not know it; migrate it with the direct engine", ErrConflict, name)
	}
	mode, err := a.chooseMode(name, req)
	if err != nil {
		return nil, err
	}
	e, spec, err := a.claim(name)
	if err != nil {
		return nil, err
	}
	// The destination calls back (handoff, log handover) as itself.
	a.setMovingTo(name, req.To)

	// The image first: seconds on a slow link, none of it frozen.
	var staged int64
	var stageTook time.Duration
	if spec.ImageDigest != "" {
		t0 := time.Now()
		if staged, err = a.PushImage(ctx, req.To, spec.ImageDigest); err != nil {
			a.setState(e, StateRunning)
			return nil, err
		}
		stageTook = time.Since(t0)
	}

	dir := filepath.Join(a.cfg.ImagesDir, name+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	src := &localSource{a: a, spec: spec, req: req, dir: dir}
	a.mu.Lock()
	e.out = src // the destination asks it for the handoff (handoff.go)
	a.mu.Unlock()
	if mode == migration.ModePostCopy {
		if src.port, err = a.freePort(); err != nil {
			a.setState(e, StateRunning)
			return nil, fmt.Errorf("post-copy page server port: %w", err)
		}
		// The pages go as the stream does: a destination called over TLS
		// fetches them over TLS (prepareIncoming).
		if peer.secure() {
			src.pageTLS = a.pageTLS
		}
	}
	dst := &remoteDest{c: peer, rwDir: runtime.RWDir(a.rt.BundleDir(name)), name: name,
		prep: PrepareRequest{Spec: spec, ResumeSignal: req.QuiesceSignal, From: a.cfg.Name, Engine: req.Engine,
			Nice: src.nice(), PageServerPort: src.port, Compress: req.Compress}, f: &a.faults,
		// The destination's restore ends within its CRIU timeout once the
		// request is gone (the same setting on every host).
		wait: a.cfg.CRIUTimeout + 15*time.Second, wentLive: src.asked.Load}
	plan := migration.Plan{
		Container: name, From: a.cfg.Name, To: req.To, Engine: req.Engine, Mode: mode, ImagesDir: filepath.Join(dir, "images"),
		Source: src, Dest: dst,
		Switch: steering{a: a, spec: spec, to: req.To},
	}
	rec, err := migration.Run(ctx, plan)
	src.release()
	a.metrics.sourceDone(rec)
	if ce := capacityRefusal(dst.prepErr); ce != nil && rec.Status == migration.StatusRolledBack {
		// The destination refused before anything was frozen: the
		// caller learns why, as a conflict it can act on.
		err = &refusedError{err: err, capacity: ce}
	}
	if staged > 0 {
		rec.ImageStageMs, rec.ImageStageB = float64(stageTook.Microseconds())/1000, staged
	}
	a.mu.Lock()
	e.out = nil
	a.mu.Unlock()
	released, _ := src.handoffNow() // the counts; the catcher is gone by now
	rec.HandoffDatagrams, rec.HandoffDatagramsLost = int64(released.Datagrams), int64(released.DatagramsLost)
	rec.Compress, rec.TransferWireB = req.Compress, dst.wireBytes()
	if rec.Status != migration.StatusSuccess {
		if kept := a.keepLogs(dir); kept != "" {
			rec.Error = strings.ReplaceAll(rec.Error, dir, kept)
			err = &keptLogsError{msg: rec.Error, err: err}
		}
	}
	if !a.cfg.KeepImages {
		_ = mounts.RemoveAll(dir)
	}
	switch rec.Status {
	case migration.StatusSuccess:
		a.registerMove(spec, req.To)
		a.awaitLogHandover(name) // logs.go: off the frozen path, after cleanup
		a.log.Info("migrated", "name", name, "to", req.To, "time_to_ready_ms", rec.TimeToReadyMs, "total_ms", rec.TotalMs, "switched_by", rec.SwitchedBy)
	case migration.StatusRolledBack:
		a.setMovingTo(name, "")
		a.mu.Lock()
		e.info.State = StateRunning
		if st, serr := a.rt.State(context.Background(), name); serr == nil {
			e.info.Pid = st.Pid
		}
		a.mu.Unlock()
		a.log.Warn("migration rolled back", "name", name, "to", req.To, "err", err)
	default:
		a.log.Error("migration failed, container lost", "name", name, "to", req.To, "err", err)
		_ = a.discard(context.Background(), name)
		_ = a.forget(context.Background(), name)
	}
	return rec, err
}

// claim marks a running container as migrating, so nothing else takes it
// meanwhile (a second request gets 409).
func (a *Agent) claim(name string) (*entry, ContainerSpec, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.containers[name]
	switch {
	case !ok:
		return nil, ContainerSpec{}, fmt.Errorf("%w: container %s on %s", ErrNotFound, name, a.cfg.Name)
	case e.info.State != StateRunning:
		return nil, ContainerSpec{}, fmt.Errorf("%w: container %s is %s", ErrConflict, name, e.info.State)
	}
	e.info.State = StateMigrating
	return e, e.info.ContainerSpec, nil
}

func (a *Agent) setState(e *entry, state string) {
	a.mu.Lock()
	e.info.State = state
	a.mu.Unlock()
}

// chooseMode resolves the request's mode, or says why it cannot be had.
func (a *Agent) chooseMode(name string, req MigrateRequest) (string, error) {
	switch req.Mode {
	case migration.ModeStopAndCopy:
		return req.Mode, nil
	case migration.ModePostCopy:
		if req.Engine != EngineDirect {
			return "", fmt.Errorf("%w: post-copy needs the direct engine", ErrBadRequest)
		}
		if err := criu.PostCopyReady(); err != nil {
			return "", fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
		return req.Mode, nil
	case "", ModeAuto:
		if req.Engine != EngineDirect || criu.PostCopyReady() != nil {
			return migration.ModeStopAndCopy, nil
		}
		if n, err := a.rt.MemoryBytes(name); err == nil && n >= PostCopyThreshold {
			return migration.ModePostCopy, nil
		}
		return migration.ModeStopAndCopy, nil
	default:
		return "", fmt.Errorf("%w: mode %q (auto, stop-and-copy or post-copy)", ErrBadRequest, req.Mode)
	}
}

// freePort finds a TCP port free in the host's namespace for a page
// server.
func (a *Agent) freePort() (int, error) {
	var port int
	err := nsrun.Do(a.cfg.HostNetns, func() error {
		l, err := net.Listen("tcp", ":0")
		if err != nil {
			return err
		}
		port = l.Addr().(*net.TCPAddr).Port
		return l.Close()
	})
	return port, err
}

// steering points the container's address at the destination, or back here.
type steering struct {
	a    *Agent
	spec ContainerSpec
	to   string
}

func (s steering) Steer(ctx context.Context) error { return s.steer(ctx, s.to) }
func (s steering) Back(ctx context.Context) error  { return s.steer(ctx, s.a.cfg.Name) }

func (s steering) steer(ctx context.Context, host string) error {
	if s.a.cfg.Steerer == nil {
		return fmt.Errorf("agent %s has no switch to steer", s.a.cfg.Name)
	}
	return s.a.cfg.Steerer.Steer(ctx, s.spec.IP, net.HardwareAddr(s.spec.MAC), host)
}

// MigrationResult wraps the record a migrate call returns.
type MigrationResult struct {
	Record migration.Record
}

// maxKeptLogs bounds the failed migrations whose CRIU logs are kept.
const maxKeptLogs = 20

// keepLogs moves the CRIU logs of a failed migration (its work*
// directories) out of dir, which is about to be removed, into the state
// directory, and returns where; the oldest beyond maxKeptLogs go.
func (a *Agent) keepLogs(dir string) string {
	works, _ := filepath.Glob(filepath.Join(dir, "work*"))
	if len(works) == 0 {
		return ""
	}
	root := filepath.Join(a.cfg.StateDir, "migration-logs")
	dst := filepath.Join(root, filepath.Base(dir))
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return ""
	}
	for _, w := range works {
		// /dev/shm and the state dir may be different filesystems.
		if err := os.Rename(w, filepath.Join(dst, filepath.Base(w))); err != nil {
			if err := copyDir(w, filepath.Join(dst, filepath.Base(w))); err != nil {
				a.log.Warn("could not keep CRIU logs", "dir", w, "err", err)
			}
		}
	}
	if ents, err := os.ReadDir(root); err == nil && len(ents) > maxKeptLogs {
		sort.Slice(ents, func(i, j int) bool {
			fi, _ := ents[i].Info()
			fj, _ := ents[j].Info()
			return fi.ModTime().Before(fj.ModTime())
		})
		for _, e := range ents[:len(ents)-maxKeptLogs] {
			_ = os.RemoveAll(filepath.Join(root, e.Name()))
		}
	}
	return dst
}

// copyDir copies the regular files of a flat directory.
func copyDir(src, dst string) error {
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// keptLogsError names where the logs went, and still unwraps to the
// migration's own error (ErrRolledBack, ...).
type keptLogsError struct {
	msg string
	err error
}

func (e *keptLogsError) Error() string { return e.msg }
func (e *keptLogsError) Unwrap() error { return e.err }

// Reference checkpoints a container and restores it in place with bare
// CRIU (see runtime.Reference): what a migration costs without transfer,
// switch and pre-staging, measured on the same container. Its clients see
// a pause and keep their connections.
func (a *Agent) Reference(ctx context.Context, name string) (runtime.Reference, error) {
	e, spec, err := a.claim(name)
	if err != nil {
		return runtime.Reference{}, err
	}
	dir := filepath.Join(a.cfg.ImagesDir, "ref-"+name+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	ref, err := a.rt.CheckpointRestoreInPlace(ctx, a.runtimeSpec(spec), dir)
	if err != nil {
		if kept := a.keepLogs(dir); kept != "" {
			err = &keptLogsError{msg: strings.ReplaceAll(err.Error(), dir, kept), err: err}
		}
	}
	_ = mounts.RemoveAll(dir)
	// The dump's lock stays in the namespace until removed (restore or not).
	_ = cnet.RemoveCRIULocks(a.netns(name))
	st, serr := a.rt.State(context.Background(), name)
	if serr != nil || (st.Status != "running" && st.Status != "paused") {
		a.log.Error("container lost in a checkpoint/restore in place", "name", name, "err", err)
		_ = a.discard(context.Background(), name)
		if err == nil {
			err = fmt.Errorf("container %s is gone after its restore", name)
		}
		return ref, err
	}
	a.mu.Lock()
	e.info.State, e.info.Pid = StateRunning, st.Pid
	a.mu.Unlock()
	if err != nil {
		_ = a.rt.Thaw(name)
	}
	return ref, err
}
