package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/containerflow/containerflow/internal/cnet"
	"github.com/containerflow/containerflow/internal/migration"
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
	// sending them on to the destination (see catcher); for comparisons.
	NoHandoff bool `json:"no_handoff,omitempty"`
}

// PrepareRequest pre-stages an incoming container on the destination.
type PrepareRequest struct {
	Spec         ContainerSpec `json:"spec"`
	ResumeSignal int           `json:"resume_signal,omitempty"`
	From         string        `json:"from"`
}

type incoming struct {
	resumeSignal int
	dir          string
	nonce        string        // the go-live hook's credential ("" without a hook)
	switched     bool          // the hook took the address
	switchTook   time.Duration // how long steering took in the hook
}

// faults lets tests break a migration at a chosen point, on the real path.
type faults struct {
	cutStreamAt int64 // close the image stream after this many bytes (0: off)
	corruptAt   int64 // flip one byte at this offset of the stream (0: off)
	afterSend   func()
}

// Migrate moves a container to another host and returns its timing record.
// A second request for a container that is already migrating is refused
// with ErrConflict.
func (a *Agent) Migrate(ctx context.Context, name string, req MigrateRequest) (*migration.Record, error) {
	if req.To == a.cfg.Name {
		return nil, fmt.Errorf("%w: %s is already on %s", ErrBadRequest, name, req.To)
	}
	peer, ok := a.cfg.Peers[req.To]
	if !ok {
		return nil, fmt.Errorf("%w: unknown destination host %q", ErrNotFound, req.To)
	}
	if req.QuiesceSignal < 0 || req.QuiesceSignal > 64 || req.DrainTimeoutMs < 0 {
		return nil, fmt.Errorf("%w: quiesce_signal must be 0-64 and drain_timeout_ms >= 0", ErrBadRequest)
	}
	a.mu.Lock()
	e, ok := a.containers[name]
	switch {
	case !ok:
		a.mu.Unlock()
		return nil, fmt.Errorf("%w: container %s on %s", ErrNotFound, name, a.cfg.Name)
	case e.info.State != StateRunning:
		a.mu.Unlock()
		return nil, fmt.Errorf("%w: container %s is %s", ErrConflict, name, e.info.State)
	}
	e.info.State = StateMigrating
	spec := e.info.ContainerSpec
	a.mu.Unlock()

	dir := filepath.Join(a.cfg.ImagesDir, name+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	src := &localSource{a: a, spec: spec, req: req, dir: dir}
	dst := &remoteDest{c: a.peerClient(peer), rwDir: runtime.RWDir(a.rt.BundleDir(name)), name: name, prep: PrepareRequest{Spec: spec, ResumeSignal: req.QuiesceSignal, From: a.cfg.Name}, f: &a.faults}
	plan := migration.Plan{
		Container: name, From: a.cfg.Name, To: req.To, ImagesDir: dir,
		Source: src, Dest: dst,
		Switch: steering{a: a, spec: spec, to: req.To},
	}
	rec, err := migration.Run(ctx, plan)
	if !a.cfg.KeepImages {
		_ = mounts.RemoveAll(dir)
	}
	switch rec.Status {
	case migration.StatusSuccess:
		a.log.Info("migrated", "name", name, "to", req.To, "time_to_ready_ms", rec.TimeToReadyMs, "total_ms", rec.TotalMs, "switched_by", rec.SwitchedBy)
	case migration.StatusRolledBack:
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
	}
	return rec, err
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

// localSource is the migration's view of this agent as the source.
type localSource struct {
	a        *Agent
	spec     ContainerSpec
	req      MigrateRequest
	dir      string
	signaled bool
	catch    *catcher
}

func (s *localSource) Quiesce(ctx context.Context) error {
	if s.req.QuiesceSignal != 0 {
		if err := s.a.rt.Signal(ctx, s.spec.Name, syscall.Signal(s.req.QuiesceSignal)); err != nil {
			return err
		}
		s.signaled = true
	}
	if s.req.DrainTimeoutMs > 0 {
		left, err := waitDrained(ctx, s.a.netns(s.spec.Name), time.Duration(s.req.DrainTimeoutMs)*time.Millisecond)
		if err != nil {
			return fmt.Errorf("wait for send queues: %w", err)
		}
		if left > 0 {
			// Not fatal: CRIU dumps queued data with the socket.
			s.a.log.Info("send queues not drained", "name", s.spec.Name, "bytes", left)
		}
	}
	return nil
}

func (s *localSource) Resume(ctx context.Context) error {
	if !s.signaled {
		return nil
	}
	return s.a.rt.Signal(ctx, s.spec.Name, syscall.Signal(s.req.QuiesceSignal))
}

// Freeze starts catching the clients' frames, then freezes: from here on
// the container answers no one.
func (s *localSource) Freeze(context.Context) error {
	if !s.req.NoHandoff {
		c, err := startCatcher(s.a.cfg.HostNetns, s.a.cfg.Uplink, net.HardwareAddr(s.spec.MAC), s.spec.IP)
		if err != nil {
			// Only an optimisation: clients then wait for their own
			// retransmissions.
			s.a.log.Warn("no frame handoff for this migration", "err", err)
		}
		s.catch = c
	}
	return s.a.rt.Freeze(s.spec.Name, 5*time.Second)
}

func (s *localSource) dropCatch() {
	if s.catch != nil {
		s.catch.discard()
		s.catch = nil
	}
}

func (s *localSource) Handoff(context.Context) (int, error) {
	if s.catch == nil {
		return 0, nil
	}
	c := s.catch
	s.catch = nil
	return c.release()
}

// Thaw resumes the container after a failed freeze or dump. A dump that
// failed because CRIU died can also leave CRIU's network lock in the
// namespace and the sockets in TCP repair mode; both are undone, or the
// container would run with every connection silently dead.
func (s *localSource) Thaw(ctx context.Context) error {
	s.dropCatch()
	err := s.a.rt.Thaw(s.spec.Name)
	if errors.Is(err, runtime.ErrNotFound) {
		return nil // the container is gone: nothing to resume
	}
	if lerr := cnet.RemoveCRIULocks(s.a.netns(s.spec.Name)); err == nil {
		err = lerr
	}
	if _, rerr := s.a.rt.ResetTCPRepair(ctx, s.spec.Name); err == nil {
		err = rerr
	}
	return err
}

func (s *localSource) opts(dir string) runtime.CheckpointOpts {
	return runtime.CheckpointOpts{ImagesDir: filepath.Join(dir, "images"), WorkDir: filepath.Join(dir, "work")}
}

func (s *localSource) Checkpoint(ctx context.Context, dir string) (int64, error) {
	o := s.opts(dir)
	ctx, cancel := context.WithTimeout(ctx, s.a.cfg.CRIUTimeout)
	defer cancel()
	if err := s.a.rt.Checkpoint(ctx, s.spec.Name, o); err != nil {
		return 0, err
	}
	return dirSize(o.ImagesDir), nil
}

func (s *localSource) Running(ctx context.Context) bool {
	st, err := s.a.rt.State(ctx, s.spec.Name)
	return err == nil && (st.Status == "running" || st.Status == "paused")
}

func (s *localSource) RestoreLocal(ctx context.Context, dir string) error {
	s.dropCatch()
	o := s.opts(dir)
	o.WorkDir = filepath.Join(dir, "work-rollback")
	if _, err := s.a.rt.Restore(ctx, s.a.runtimeSpec(s.spec), o); err != nil {
		return err
	}
	return cnet.RemoveCRIULocks(s.a.netns(s.spec.Name))
}

func (s *localSource) Finish(ctx context.Context) error {
	s.dropCatch()
	err := s.a.rt.Delete(ctx, s.spec.Name)
	if derr := cnet.Delete(s.a.netns(s.spec.Name)); err == nil {
		err = derr
	}
	s.a.release(s.spec.Name)
	return err
}

// remoteDest is the migration's view of the destination agent.
type remoteDest struct {
	c     *Client
	rwDir string // the container's writable directories on the source
	name  string
	prep  PrepareRequest
	f     *faults
}

func (d *remoteDest) Prepare(ctx context.Context) error {
	return d.c.do(ctx, "POST", "/v1/migrations", d.prep, nil)
}

func (d *remoteDest) TransferAndRestore(ctx context.Context, dir string) (migration.DestReport, error) {
	pr, pw := io.Pipe()
	go func() {
		var w io.Writer = pw
		if d.f.cutStreamAt > 0 || d.f.corruptAt > 0 {
			w = &faultyWriter{w: pw, f: d.f}
		}
		_, err := sendTrees([]tree{{"images", filepath.Join(dir, "images")}, {"rw", d.rwDir}}, w)
		if errors.Is(err, errCut) {
			err = io.ErrUnexpectedEOF
		}
		pw.CloseWithError(err)
		if d.f.afterSend != nil {
			d.f.afterSend()
		}
	}()
	var rep migration.DestReport
	err := d.c.doStream(ctx, "/v1/migrations/"+d.name+"/images", pr, &rep)
	pr.Close()
	if err != nil {
		// A failed restore still says whether the destination had taken
		// the address before failing (see api.go).
		if apiErr, ok := err.(*APIError); ok && apiErr.Switched {
			rep.Switched = true
		}
	}
	return rep, err
}

func (d *remoteDest) Commit(ctx context.Context) error {
	return d.c.do(ctx, "POST", "/v1/migrations/"+d.name+"/commit", nil, nil)
}

func (d *remoteDest) Abort(ctx context.Context) error {
	return d.c.do(ctx, "POST", "/v1/migrations/"+d.name+"/abort", nil, nil)
}

var errCut = errors.New("stream cut (fault injection)")

type faultyWriter struct {
	w   io.Writer
	f   *faults
	off int64
}

func (fw *faultyWriter) Write(p []byte) (int, error) {
	if c := fw.f.corruptAt; c > 0 && fw.off <= c && c < fw.off+int64(len(p)) {
		q := append([]byte(nil), p...)
		q[c-fw.off] ^= 0xff
		p = q
	}
	if c := fw.f.cutStreamAt; c > 0 && fw.off+int64(len(p)) > c {
		n, _ := fw.w.Write(p[:c-fw.off])
		fw.off += int64(n)
		return n, errCut
	}
	n, err := fw.w.Write(p)
	fw.off += int64(n)
	return n, err
}

// Destination side.

func (a *Agent) prepareIncoming(ctx context.Context, req PrepareRequest) error {
	s := req.Spec
	if err := a.validate(&s); err != nil {
		return err
	}
	e, err := a.reserve(s, StateIncoming)
	if err != nil {
		return err
	}
	dir := filepath.Join(a.cfg.ImagesDir, "in-"+s.Name+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	e.incoming = &incoming{resumeSignal: req.ResumeSignal, dir: dir}
	fail := func(err error) error {
		_ = cnet.Delete(a.netns(s.Name))
		_ = mounts.RemoveAll(dir)
		a.release(s.Name)
		return err
	}
	if err := a.createNetns(s); err != nil {
		return fail(fmt.Errorf("network for incoming %s: %w", s.Name, err))
	}
	// Locked until commit: nothing reaches or leaves the restored
	// container before the switch points here.
	if err := cnet.Lock(a.netns(s.Name)); err != nil {
		return fail(err)
	}
	script := ""
	if a.hookEnabled() {
		var nonce string
		var err error
		if script, nonce, err = a.writeHookScript(dir, s.Name); err != nil {
			return fail(err)
		}
		e.incoming.nonce = nonce
	}
	if err := a.rt.PrepareBundle(a.runtimeSpecWith(s, script)); err != nil {
		return fail(err)
	}
	a.log.Info("incoming container staged", "name", s.Name, "from", req.From)
	return nil
}

func (a *Agent) incomingEntry(name string) (*entry, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.containers[name]
	if !ok || e.incoming == nil {
		return nil, fmt.Errorf("%w: no incoming migration of %s on %s", ErrNotFound, name, a.cfg.Name)
	}
	return e, nil
}

func (a *Agent) receiveAndRestore(ctx context.Context, name string, body io.Reader) (migration.DestReport, error) {
	e, err := a.incomingEntry(name)
	if err != nil {
		return migration.DestReport{}, err
	}
	in := e.incoming
	t0 := time.Now()
	n, err := receiveTrees(body, map[string]string{
		"images": filepath.Join(in.dir, "images"),
		"rw":     runtime.RWDir(a.rt.BundleDir(name)),
	})
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			return migration.DestReport{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
		return migration.DestReport{}, err
	}
	t1 := time.Now()
	o := runtime.CheckpointOpts{ImagesDir: filepath.Join(in.dir, "images"), WorkDir: filepath.Join(in.dir, "work")}
	rctx, cancel := context.WithTimeout(ctx, a.cfg.CRIUTimeout)
	defer cancel()
	// The bundle written at prepare time (with the go-live hook) is used.
	pid, err := a.rt.Restore(rctx, a.runtimeSpec(e.info.ContainerSpec), o)
	a.mu.Lock()
	rep := migration.DestReport{Bytes: n, Transfer: t1.Sub(t0), Switched: in.switched, SwitchTook: in.switchTook}
	a.mu.Unlock()
	if err != nil {
		return rep, err
	}
	t2 := time.Now()
	a.mu.Lock()
	e.info.Pid = pid
	a.mu.Unlock()
	rep.Restore, rep.RestoredAt = t2.Sub(t1), t2
	return rep, nil
}

func (a *Agent) commitIncoming(ctx context.Context, name string) error {
	e, err := a.incomingEntry(name)
	if err != nil {
		return err
	}
	ns := a.netns(name)
	if err := cnet.Unlock(ns); err != nil {
		return err
	}
	_ = cnet.RemoveCRIULocks(ns)
	if sig := e.incoming.resumeSignal; sig != 0 {
		if err := a.rt.Signal(ctx, name, syscall.Signal(sig)); err != nil {
			a.log.Warn("resume signal failed", "name", name, "err", err)
		}
	}
	if err := a.rt.SetActionScript(a.runtimeSpec(e.info.ContainerSpec), ""); err != nil {
		return err
	}
	if !a.cfg.KeepImages {
		_ = mounts.RemoveAll(e.incoming.dir)
	}
	a.mu.Lock()
	e.incoming = nil
	e.info.State = StateRunning
	e.info.Started = time.Now().UTC()
	spec := e.info.ContainerSpec
	a.mu.Unlock()
	return a.saveSpec(spec)
}

func (a *Agent) abortIncoming(ctx context.Context, name string) error {
	e, err := a.incomingEntry(name)
	if err != nil {
		return err
	}
	dir := e.incoming.dir
	err = a.discard(ctx, name)
	_ = mounts.RemoveAll(dir)
	a.log.Info("incoming migration aborted", "name", name)
	return err
}

// MigrationResult wraps the record a migrate call returns.
type MigrationResult struct {
	Record migration.Record
}
