package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerflow/containerflow/internal/cnet"
	"github.com/containerflow/containerflow/internal/migration/drain"
	"github.com/containerflow/containerflow/internal/migration/handoff"
	"github.com/containerflow/containerflow/internal/migration/transfer"
	"github.com/containerflow/containerflow/internal/pki"
	"github.com/containerflow/containerflow/internal/runtime"
)

// localSource is the migration's view of this agent as the source.
type localSource struct {
	a        *Agent
	spec     ContainerSpec
	req      MigrateRequest
	dir      string // the migration's directory: images/, work/, work-rollback/
	signaled bool
	hmu      sync.Mutex // catch and released: the destination may ask for the handoff (handoffNow)
	catch    *handoff.Catcher
	released handoff.Released  // what the handoff sent, for the record
	asked    atomic.Bool       // the destination asked for the handoff: it took the address
	dumper   *runtime.Dumper   // direct engine: CRIU started, waiting for the freeze
	port     int               // post-copy: the page server's port
	pageTLS  *pki.Files        // post-copy: the page server speaks TLS (as the stream does)
	pages    *runtime.PostCopy // post-copy: the pages being served
}

func (s *localSource) direct() bool { return s.req.Engine != EngineRunc }

func (s *localSource) nice() int {
	if s.req.NoPriority {
		return 0
	}
	return MigrationNice
}

func (s *localSource) opts(workName string) runtime.DirectOpts {
	return runtime.DirectOpts{ImagesDir: filepath.Join(s.dir, "images"), WorkDir: filepath.Join(s.dir, workName),
		LogLevel: s.a.cfg.CRIULogLevel, Nice: s.nice(), HostNetns: s.a.cfg.HostNetns, PageServerPort: s.port, PageServerTLS: s.pageTLS,
		NetworkLocked: true, LeaveStopped: s.port == 0}
}

// Prepare starts CRIU for the dump while the container still runs.
func (s *localSource) Prepare(ctx context.Context) error {
	if !s.direct() {
		return nil
	}
	d, err := s.a.rt.PrepareDump(ctx, s.spec.Name, s.opts("work"))
	if err != nil {
		return err
	}
	s.dumper = d
	return nil
}

// release stops a CRIU started for a dump that never ran.
func (s *localSource) release() {
	if s.dumper != nil {
		s.dumper.Close()
		s.dumper = nil
	}
	if s.pages != nil {
		s.pages.Abort()
		s.pages = nil
	}
	s.dropCatch()
}

func (s *localSource) Quiesce(ctx context.Context) error {
	if s.req.QuiesceSignal != 0 {
		if err := s.a.rt.Signal(ctx, s.spec.Name, syscall.Signal(s.req.QuiesceSignal)); err != nil {
			return err
		}
		s.signaled = true
	}
	if s.req.DrainTimeoutMs > 0 {
		left, err := drain.Wait(ctx, s.a.netns(s.spec.Name), time.Duration(s.req.DrainTimeoutMs)*time.Millisecond)
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
		c, err := handoff.Start(s.a.cfg.HostNetns, s.a.cfg.Uplink, net.HardwareAddr(s.spec.MAC), s.spec.IP, s.a.netns(s.spec.Name))
		if err != nil {
			// Only an optimisation: clients then wait for their own
			// retransmissions.
			s.a.log.Warn("no frame handoff for this migration", "err", err)
		}
		s.hmu.Lock()
		s.catch = c
		s.hmu.Unlock()
	}
	if err := s.a.rt.Freeze(s.spec.Name, 5*time.Second); err != nil {
		return err
	}
	if s.spec.Resources.CPUs > 0 {
		// CRIU's parasite runs in the frozen tasks: not under their quota
		// (see runtime.SetCPULimit). giveBack puts it back.
		if err := s.a.rt.SetCPULimit(s.spec.Name, runtime.Resources{}); err != nil {
			s.a.log.Warn("CPU limit not lifted for the dump", "name", s.spec.Name, "err", err)
		}
	}
	if f := s.a.faults.afterFreeze; f != nil {
		f()
	}
	return nil
}

// takeCatch removes the catcher, so that one caller alone releases or
// discards it.
func (s *localSource) takeCatch() *handoff.Catcher {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	c := s.catch
	s.catch = nil
	return c
}

func (s *localSource) dropCatch() {
	if c := s.takeCatch(); c != nil {
		c.Discard()
	}
}

// handoffNow sends what the catcher took to whoever owns the address now,
// once: a second call (the migration's handoff step after the destination
// asked for it inside its go-live) reports the first one's counts.
func (s *localSource) handoffNow() (handoff.Released, error) {
	c := s.takeCatch()
	if c == nil {
		s.hmu.Lock()
		defer s.hmu.Unlock()
		return s.released, nil
	}
	r, err := c.Release()
	s.hmu.Lock()
	s.released = r
	s.hmu.Unlock()
	return r, err
}

func (s *localSource) Handoff(context.Context) (int, error) {
	r, err := s.handoffNow()
	return r.Frames + r.Datagrams, err
}

// Thaw resumes the container after a failed freeze or dump, and hands it
// the clients' frames caught meanwhile.
func (s *localSource) Thaw(ctx context.Context) error {
	err := s.thaw(ctx)
	s.giveBack(err)
	return err
}

// giveBack sends the clients' frames caught since the freeze to the
// container resumed here, as the forward path sends them to the
// destination: without it a client that sent during the freeze waits for
// its backed-off retransmission timer after every rollback.
func (s *localSource) giveBack(resumeErr error) {
	if s.spec.Resources.CPUs > 0 {
		if err := s.a.rt.SetCPULimit(s.spec.Name, s.spec.Resources); err != nil && resumeErr == nil {
			s.a.log.Error("CPU limit not restored after the rollback", "name", s.spec.Name, "err", err)
		}
	}
	if resumeErr != nil {
		s.dropCatch()
		return
	}
	r, err := s.handoffNow()
	if err != nil {
		s.a.log.Warn("frames caught during the freeze not handed back", "name", s.spec.Name, "err", err)
	} else if r.Frames+r.Datagrams > 0 {
		s.a.log.Info("handed the frames caught during the freeze back to the source", "name", s.spec.Name,
			"frames", r.Frames, "datagrams", r.Datagrams, "datagrams_lost", r.DatagramsLost)
	}
}

// thaw undoes a freeze and a failed dump. A dump that failed because CRIU
// died can also leave CRIU's network lock in the namespace and the sockets
// in TCP repair mode; both are undone, or the container would run with
// every connection silently dead. Both come before the thaw, for tasks
// still frozen: a program that runs while its sockets are in repair mode
// sees its reads fail (EPERM) and may give the connection up. (A CRIU
// killed mid-dump has already let the tasks run: it holds them by ptrace,
// not by the freezer; docs/soak.md, finding 11.)
func (s *localSource) thaw(ctx context.Context) error {
	_, err := s.a.rt.ResetTCPRepair(ctx, s.spec.Name)
	if uerr := s.unlock(); err == nil {
		err = uerr
	}
	terr := s.a.rt.Thaw(s.spec.Name)
	if errors.Is(terr, runtime.ErrNotFound) {
		return nil // the container is gone: nothing to resume
	}
	if err == nil {
		err = terr
	}
	return err
}

func (s *localSource) Checkpoint(ctx context.Context, images string) (int64, error) {
	// A client that goes away must not kill CRIU while its parasite is in
	// the frozen tasks (that loses the container): the dump runs to its
	// end, bounded by CRIUTimeout, and the cancelled request then rolls
	// the migration back at the next step.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.a.cfg.CRIUTimeout)
	defer cancel()
	if s.direct() {
		// Instead of CRIU's slower lock (see runtime.DirectOpts): from here
		// the source kernel drops the clients' packets instead of
		// answering them with RST once the sockets are gone.
		if err := cnet.Lock(s.a.netns(s.spec.Name)); err != nil {
			return 0, fmt.Errorf("lock %s: %w", s.spec.Name, err)
		}
	}
	d := s.dumper // the direct engine's, consumed by its dump
	s.dumper = nil
	switch {
	case s.port > 0:
		pc, err := d.DumpPostCopy(ctx)
		if err != nil {
			return 0, err
		}
		s.pages = pc
	case s.direct():
		if err := d.Dump(ctx); err != nil {
			return 0, err
		}
	default:
		o := runtime.CheckpointOpts{ImagesDir: images, WorkDir: filepath.Join(s.dir, "work")}
		if err := s.a.rt.Checkpoint(ctx, s.spec.Name, o); err != nil {
			return 0, err
		}
	}
	return transfer.DirSize(images), nil
}

func (s *localSource) Running(ctx context.Context) bool {
	st, err := s.a.rt.State(ctx, s.spec.Name)
	return err == nil && (st.Status == "running" || st.Status == "paused")
}

// RestoreLocal brings the container back here, and hands it the clients'
// frames caught since the freeze.
func (s *localSource) RestoreLocal(ctx context.Context, images string) error {
	err := s.restoreLocal(ctx, images)
	s.giveBack(err)
	return err
}

// restoreLocal resumes the tasks a direct dump left stopped, or restores
// the container from its own images with the engine that dumped it. In
// post-copy there are no memory images: the tasks are still here, frozen,
// and CRIU lets them run again once its page server fails.
func (s *localSource) restoreLocal(ctx context.Context, images string) error {
	if pc := s.pages; pc != nil {
		s.pages = nil
		// CRIU lets the tasks run again at once but, on this path, leaves
		// their sockets in repair mode (a read then fails with EPERM): take
		// them out first, while the tasks are still held.
		if _, err := s.a.rt.ResetTCPRepair(ctx, s.spec.Name); err != nil {
			s.a.log.Warn("tcp repair reset before resuming the post-copy source", "name", s.spec.Name, "err", err)
		}
		pc.Abort()
		if err := pc.Wait(ctx); err == nil {
			return errors.New("the page server had already sent every page: the tasks are gone")
		}
		if err := s.thaw(ctx); err != nil {
			return err
		}
		if st, err := s.a.rt.State(ctx, s.spec.Name); err != nil || (st.Status != "running" && st.Status != "paused") {
			return fmt.Errorf("the container did not survive the end of its page server (%+v, %v)", st, err)
		}
		return nil
	}
	if s.direct() && s.Running(ctx) {
		// The dump left the tasks stopped, memory and sockets as they
		// were: they go on from there, no restore needed.
		if _, err := s.a.rt.ResetTCPRepair(ctx, s.spec.Name); err != nil {
			return err
		}
		if err := s.unlock(); err != nil {
			return err
		}
		if err := s.a.rt.Thaw(s.spec.Name); err != nil {
			return err
		}
		return s.a.rt.ResumeStopped(s.spec.Name)
	}
	rs := s.a.runtimeSpec(s.spec)
	if s.direct() {
		r, err := s.a.rt.PrepareRestore(rs, s.opts("work-rollback"))
		if err != nil {
			return err
		}
		if _, err := r.Restore(ctx, nil); err != nil {
			return err
		}
	} else {
		o := runtime.CheckpointOpts{ImagesDir: images, WorkDir: filepath.Join(s.dir, "work-rollback")}
		if _, err := s.a.rt.Restore(ctx, rs, o); err != nil {
			return err
		}
	}
	return s.unlock()
}

// unlock removes the dump's network lock, ours or CRIU's.
func (s *localSource) unlock() error {
	ns := s.a.netns(s.spec.Name)
	err := cnet.Unlock(ns)
	if cerr := cnet.RemoveCRIULocks(ns); err == nil {
		err = cerr
	}
	go func() { _ = cnet.Tidy(ns) }() // slow, and nothing waits for it
	return err
}

// Settle waits, in post-copy, for the destination to have every page.
func (s *localSource) Settle(ctx context.Context) error {
	if s.pages == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, PostCopyTimeout)
	defer cancel()
	err := s.pages.Wait(ctx)
	if err != nil {
		s.pages.Abort()
	}
	s.pages = nil
	return err
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
