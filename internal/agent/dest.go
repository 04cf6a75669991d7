package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerflow/containerflow/internal/cnet"
	"github.com/containerflow/containerflow/internal/criu"
	"github.com/containerflow/containerflow/internal/migration"
	"github.com/containerflow/containerflow/internal/migration/transfer"
	"github.com/containerflow/containerflow/internal/mounts"
	"github.com/containerflow/containerflow/internal/nsrun"
	"github.com/containerflow/containerflow/internal/runtime"
)

// remoteDest is the migration's view of the destination agent.
type remoteDest struct {
	c     *Client
	rwDir string // the container's writable directories on the source
	name  string
	prep  PrepareRequest
	f     *faults
	st    *transfer.Stream // the last image stream opened
	wait  time.Duration    // for the outcome of a stream whose answer was lost
	// wentLive says the destination took the address (it asked this
	// source for the handoff): from then on only its answer may end the
	// migration, however long its agent takes to come back.
	wentLive func() bool
	// prepErr is the destination's answer to the prepare, when it
	// refused: a refusal for capacity is told apart from other failures.
	prepErr error
}

// wireBytes is what the image stream put on the wire (compressed, with
// Compress), 0 if none was opened.
func (d *remoteDest) wireBytes() int64 {
	if d.st == nil {
		return 0
	}
	return d.st.WireBytes()
}

func (d *remoteDest) Prepare(ctx context.Context) error {
	d.prepErr = d.c.do(ctx, "POST", "/v1/migrations", d.prep, nil)
	return d.prepErr
}

// Open starts the image stream: one HTTP request whose body is a tar of
// the container's writable directories (it is frozen: they hold still),
// then of CRIU's images, each sent as soon as CRIU closes it.
func (d *remoteDest) Open(ctx context.Context, images string) (migration.Transfer, error) {
	t := &remoteTransfer{}
	var wrap func(io.Writer) io.Writer
	if d.f.cutStreamAt > 0 || d.f.corruptAt > 0 {
		wrap = func(w io.Writer) io.Writer { return &faultyWriter{w: w, f: d.f} }
	}
	var err error
	t.st, err = transfer.StartStream([]transfer.Tree{{Name: "rw", Dir: d.rwDir}}, transfer.Tree{Name: "images", Dir: images, Appends: criu.AppendedImage}, d.prep.Compress, wrap,
		func(body io.Reader) error {
			err := d.c.doStream(ctx, "/v1/migrations/"+d.name+"/images", body, &t.rep)
			var apiErr *APIError
			if err == nil {
				return nil
			}
			if errors.As(err, &apiErr) {
				// A failed restore still says whether the destination had
				// taken the address before failing (see api.go).
				t.rep.Switched = apiErr.Switched
				return err
			}
			// No answer (the request was cut): the destination may have
			// gone live all the same, and then runs to its end.
			return d.askOutcome(ctx, err, &t.rep)
		})
	if err != nil {
		return nil, err
	}
	d.st = t.st
	return t, nil
}

// askOutcome asks the destination how the image stream whose request
// failed with err ended. Restored: the migration goes on as if the answer
// had come. Otherwise, or without an answer, err stands; without an
// answer the switch is pointed back, which costs nothing if it never
// moved.
//
// A destination that does not answer at all (its agent died with the
// request) is asked again: its next run adopts a copy it had restored
// and answers for it (incoming_record.go). Rolling back meanwhile would
// put the clients back on a copy behind the one they talked to. It is
// asked for UnreachableWait — an agent's restart — or, once it took the
// address, for as long as its restore may last.
func (d *remoteDest) askOutcome(ctx context.Context, err error, rep *migration.DestReport) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.wait)
	defer cancel()
	var o Outcome
	qerr := d.retryUnreachable(ctx, func() error {
		return d.c.do(ctx, "GET", "/v1/migrations/"+d.name+"/outcome", nil, &o)
	})
	if qerr != nil {
		rep.Switched = true
		return fmt.Errorf("%w (and no outcome from the destination: %v)", err, qerr)
	}
	*rep = o.Report
	if o.Restored {
		return nil
	}
	return fmt.Errorf("%w (destination: %s)", err, o.Error)
}

// remoteTransfer is an image stream on its way to the destination.
type remoteTransfer struct {
	st  *transfer.Stream
	rep migration.DestReport // set by the request, read after it ended
}

func (t *remoteTransfer) Finish(context.Context) (migration.DestReport, error) {
	err := t.st.Finish()
	if errors.Is(err, errCut) {
		err = io.ErrUnexpectedEOF
	}
	return t.rep, err
}

func (t *remoteTransfer) Cancel() { t.st.Cancel(errors.New("checkpoint failed")) }

// Settle waits for the destination to say whether every page arrived.
func (d *remoteDest) Settle(ctx context.Context) error {
	if d.prep.PageServerPort == 0 {
		return nil
	}
	return d.c.do(ctx, "POST", "/v1/migrations/"+d.name+"/settle", nil, nil)
}

func (d *remoteDest) Commit(ctx context.Context) error {
	return d.c.do(ctx, "POST", "/v1/migrations/"+d.name+"/commit", nil, nil)
}

// Abort discards the destination's copy. Once images were sent, an
// unreachable destination is asked again as for the outcome: a copy its
// restarted agent adopted would otherwise run on beside the source's.
// (Before that nothing of it runs; a staging left there expires.)
func (d *remoteDest) Abort(ctx context.Context) error {
	abort := func() error { return d.c.do(ctx, "POST", "/v1/migrations/"+d.name+"/abort", nil, nil) }
	if d.st == nil {
		return abort()
	}
	return d.retryUnreachable(ctx, abort)
}

// UnreachableWait is how long a source asks again a destination that does
// not answer, unless it took the address.
const UnreachableWait = 5 * time.Second

// retryUnreachable calls call until the agent answers (an answer, or an
// error of its own), ctx ends, or UnreachableWait passed and the
// destination never took the address.
func (d *remoteDest) retryUnreachable(ctx context.Context, call func() error) error {
	start := time.Now()
	pause := 50 * time.Millisecond
	for {
		err := call()
		var apiErr *APIError
		if err == nil || errors.As(err, &apiErr) || ctx.Err() != nil ||
			(time.Since(start) >= UnreachableWait && (d.wentLive == nil || !d.wentLive())) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
		pause = min(2*pause, time.Second)
	}
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

// prepareIncoming stages an incoming container; plain says the source
// called over its plain (--insecure) listener, which this agent's calls
// back to it use as well.
func (a *Agent) prepareIncoming(ctx context.Context, req PrepareRequest, sourceHost string, plain bool) error {
	s := req.Spec
	if err := a.validate(&s); err != nil {
		return err
	}
	var err error
	if req.Engine, err = engine(req.Engine); err != nil {
		return err
	}
	if old := a.staleIncoming(s.Name, req.From); old != nil {
		// A source runs one migration of a container at a time: a new one
		// means the last ended without telling us (its agent restarted).
		a.log.Warn("replacing an incoming migration its source gave up", "name", s.Name, "from", req.From)
		_ = a.abortIncoming(ctx, s.Name)
	}
	e, err := a.reserve(s, StateIncoming)
	if err != nil {
		return err
	}
	dir := filepath.Join(a.cfg.ImagesDir, "in-"+s.Name+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := transfer.CheckCompression(req.Compress); err != nil {
		a.release(s.Name)
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	in := &incoming{resumeSignal: req.ResumeSignal, dir: dir, engine: req.Engine, compress: req.Compress, from: req.From, plain: plain}
	if req.PageServerPort > 0 {
		if req.Engine != EngineDirect || sourceHost == "" || req.PageServerPort > 65535 {
			a.release(s.Name)
			return fmt.Errorf("%w: post-copy needs the direct engine and a TCP source", ErrBadRequest)
		}
		in.pageServer = net.JoinHostPort(sourceHost, strconv.Itoa(req.PageServerPort))
	}
	e.incoming = in
	fail := func(err error) error {
		if in.restorer != nil {
			in.restorer.Close()
		}
		_ = a.rt.Delete(context.Background(), s.Name)
		_ = cnet.Delete(a.netns(s.Name))
		_ = mounts.RemoveAll(dir)
		a.release(s.Name)
		return err
	}
	if err := a.createNetns(s); err != nil {
		return fail(fmt.Errorf("network for incoming %s: %w", s.Name, err))
	}
	// Locked until the container goes live: nothing reaches or leaves the
	// restored container before the switch points here.
	if err := cnet.Lock(a.netns(s.Name)); err != nil {
		return fail(err)
	}
	script := ""
	if in.engine == EngineRunc && a.hookEnabled() {
		var nonce string
		var err error
		if script, nonce, err = a.writeHookScript(dir, s.Name); err != nil {
			return fail(err)
		}
		in.nonce = nonce
	}
	if err := a.rt.PrepareBundle(a.runtimeSpecWith(s, script)); err != nil {
		return fail(err)
	}
	if in.engine == EngineDirect {
		if req.Nice < -20 || req.Nice > 19 {
			return fail(fmt.Errorf("%w: nice %d", ErrBadRequest, req.Nice))
		}
		o := runtime.DirectOpts{ImagesDir: filepath.Join(dir, "images"), WorkDir: filepath.Join(dir, "work"), LogLevel: a.cfg.CRIULogLevel,
			Nice: req.Nice, HostNetns: a.cfg.HostNetns, PageServer: in.pageServer}
		if in.pageServer != "" && !plain {
			o.PageServerTLS = a.pageTLS // as the source's (Migrate)
		}
		if in.restorer, err = a.rt.PrepareRestore(a.runtimeSpec(s), o); err != nil {
			return fail(err)
		}
	}
	if err := a.saveIncoming(e); err != nil {
		return fail(fmt.Errorf("record incoming %s: %w", s.Name, err))
	}
	a.inheritLogs(s, req.From, plain) // logs.go: the history comes while this one waits
	a.log.Info("incoming container staged", "name", s.Name, "from", req.From, "engine", in.engine)
	time.AfterFunc(StagedTimeout, func() {
		if a.staleIncoming(s.Name, req.From) == in {
			a.log.Warn("incoming migration expired: its images never came", "name", s.Name, "from", req.From, "after", StagedTimeout)
			_ = a.abortIncoming(context.Background(), s.Name)
		}
	})
	return nil
}

// StagedTimeout is how long a staged incoming migration waits for its
// images before it is discarded: far beyond a source's preparation
// (migration.DefaultPrepareTimeout) and frozen window together.
const StagedTimeout = 10 * time.Minute

// staleIncoming returns the staged incoming migration of name from host
// if nothing of it runs or can still run: no image stream came, or one
// came and failed. (A restored copy that was never committed is live and
// serving: it is never taken for stale.)
func (a *Agent) staleIncoming(name, from string) *incoming {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.containers[name]
	if !ok || e.incoming == nil || e.incoming.from != from {
		return nil
	}
	in := e.incoming
	if in.busy == nil || (in.outcome != nil && in.outcome.Err != nil) {
		return in
	}
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

// receiveAndRestore unpacks the image stream and restores the container
// the moment it is complete.
func (a *Agent) receiveAndRestore(ctx context.Context, name string, body io.Reader) (rep migration.DestReport, err error) {
	e, err := a.incomingEntry(name)
	if err != nil {
		return migration.DestReport{}, err
	}
	in := e.incoming
	// An abort arriving meanwhile stops this handler and waits for it
	// before it discards anything.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.mu.Lock()
	if in.busy != nil {
		a.mu.Unlock()
		return migration.DestReport{}, fmt.Errorf("%w: the images of %s are already arriving", ErrConflict, name)
	}
	busy := make(chan struct{})
	in.busy, in.cancel = busy, cancel
	a.mu.Unlock()
	defer close(busy)
	defer func() {
		a.mu.Lock()
		in.outcome = &restoreOutcome{Report: rep, Err: err}
		a.mu.Unlock()
	}()
	images := filepath.Join(in.dir, "images")
	t0 := time.Now()
	body, closeBody, err := transfer.NewReceiver(body, in.compress)
	if err != nil {
		return migration.DestReport{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	defer closeBody()
	n, err := transfer.Receive(body, map[string]string{
		"images": images,
		"rw":     runtime.RWDir(a.rt.BundleDir(name)),
	})
	if err != nil {
		if errors.Is(err, transfer.ErrCorrupt) {
			return migration.DestReport{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
		return migration.DestReport{}, err
	}
	t1 := time.Now()
	if _, err := os.Stat(nsrun.Path(a.netns(name))); err != nil {
		return migration.DestReport{}, fmt.Errorf("%w: %v", errNamespaceGone, err)
	}
	// Until the go-live the restore stops with the request (the source
	// gone, or an abort): the source still has the container. From the
	// go-live on, the clients talk to this copy: killing it there would
	// lose their connections whatever the source then does, so it runs to
	// its end and the source learns the outcome (outcomeOf).
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.CRIUTimeout)
	defer cancel()
	defer context.AfterFunc(ctx, func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if !in.live {
			in.stopped = true
			cancel()
		}
	})()
	var pid int
	if in.engine == EngineDirect {
		var goLive func() error
		if a.cfg.Steerer != nil {
			goLive = func() error { return a.takeAddress(context.Background(), e, true) }
			in.restorer.PostResume = func() { a.goLiveTCP(e) }
		}
		var res runtime.Restored
		res, err = in.restorer.Restore(rctx, goLive)
		a.dropCatch(e) // delivered at the resume, or never will be
		pid = res.Pid
		if res.LimitErr != nil {
			a.log.Error("restored without its CPU limit", "name", name, "err", res.LimitErr)
		}
		if res.CRIULost != nil {
			a.log.Warn("CRIU failed after the container resumed; it runs", "name", name, "pid", pid, "err", res.CRIULost)
		}
		if res.Pages != nil {
			a.followPages(e, res.Pages, in.dir)
		}
		var pre *runtime.PreResumeError
		if errors.As(err, &pre) && (errors.Is(pre.Err, errNamespaceGone) || errors.Is(pre.Err, errStoppedBeforeGoLive)) {
			// Restored into a namespace no one can reach, or for a source
			// that stopped waiting: kill that copy and fail, so the source
			// takes its container up again.
			_ = a.rt.Delete(context.Background(), name)
			err = fmt.Errorf("restore %s: %w", name, pre.Err)
		} else if errors.As(err, &pre) {
			// Restored, but still locked and without the address: the
			// source steers instead (see hook.go).
			a.log.Warn("could not go live inside the restore", "name", name, "err", pre.Err)
			err = nil
		}
	} else {
		// The bundle written at prepare time (with the go-live hook) is used.
		o := runtime.CheckpointOpts{ImagesDir: images, WorkDir: filepath.Join(in.dir, "work")}
		pid, err = a.rt.Restore(rctx, a.runtimeSpec(e.info.ContainerSpec), o)
	}
	a.mu.Lock()
	rep = migration.DestReport{Bytes: n, Stream: t1.Sub(t0), Switched: in.switched, SwitchTook: in.switchTook}
	a.mu.Unlock()
	if err != nil {
		// The log that says why must outlive the abort that follows.
		if kept := a.keepLogs(in.dir); kept != "" {
			err = &keptLogsError{msg: strings.ReplaceAll(err.Error(), in.dir, kept), err: err}
		}
		return rep, err
	}
	t2 := time.Now()
	a.mu.Lock()
	e.info.Pid = pid
	a.mu.Unlock()
	rep.Restore, rep.RestoredAt = t2.Sub(t1), t2
	return rep, nil
}

// restoreOutcome is how an incoming migration's image stream ended, kept
// for a source that lost the answer with its request.
type restoreOutcome struct {
	Report migration.DestReport
	Err    error
}

// Outcome is what GET /v1/migrations/{name}/outcome answers.
type Outcome struct {
	// Restored: the container runs here (Report says how it went).
	Restored bool                 `json:"restored"`
	Report   migration.DestReport `json:"report"`
	Error    string               `json:"error,omitempty"` // why not
}

// outcomeOf waits for an incoming migration's image stream handler to end
// and says how it ended. A source whose stream request broke asks it: the
// destination may have gone live all the same, and rolling back then would
// cut the clients who already talk to this copy.
func (a *Agent) outcomeOf(ctx context.Context, name string) (Outcome, error) {
	e, err := a.incomingEntry(name)
	if err != nil {
		return Outcome{}, err
	}
	a.mu.Lock()
	in := e.incoming
	busy := in.busy
	a.mu.Unlock()
	if busy == nil {
		return Outcome{Error: "no image stream arrived"}, nil
	}
	select {
	case <-busy:
	case <-ctx.Done():
		return Outcome{}, ctx.Err()
	}
	a.mu.Lock()
	o := in.outcome
	a.mu.Unlock()
	if o.Err != nil {
		return Outcome{Report: o.Report, Error: o.Err.Error()}, nil
	}
	return Outcome{Restored: true, Report: o.Report}, nil
}

// settleIncoming answers, once the container's post-copy has ended,
// whether every page arrived.
func (a *Agent) settleIncoming(ctx context.Context, name string) error {
	a.mu.Lock()
	e, ok := a.containers[name]
	var pc *runtime.PostCopy
	if ok {
		pc = e.pages
	}
	a.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: container %s on %s (lost with its post-copy?)", ErrNotFound, name, a.cfg.Name)
	}
	if pc == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, PostCopyTimeout)
	defer cancel()
	return pc.Wait(ctx)
}

// followPages watches a post-copy restore's page transfer. A container
// whose pages stopped coming is killed at once: its next fault on a
// missing page would be answered with a zero page.
func (a *Agent) followPages(e *entry, pc *runtime.PostCopy, dir string) {
	a.mu.Lock()
	e.info.PagesPending, e.pages = true, pc
	name := e.info.Name
	a.mu.Unlock()
	go func() {
		err := pc.Wait(context.Background())
		a.mu.Lock()
		e.info.PagesPending = false
		ours := a.containers[name] == e
		committed := e.incoming == nil
		a.mu.Unlock()
		if err == nil && committed {
			a.incomingEnded(e, migration.StatusSuccess) // else the commit counts it
		} else if err != nil && ours {
			a.incomingEnded(e, migration.StatusFailed)
		}
		if err == nil {
			a.log.Info("post-copy complete", "name", name, "took", pc.Took())
			if !a.cfg.KeepImages {
				_ = mounts.RemoveAll(dir)
			}
			return
		}
		kept := a.keepLogs(dir)
		_ = mounts.RemoveAll(dir)
		a.log.Error("post-copy interrupted: killing the container, whose memory is incomplete", "name", name, "err", err, "criu_logs", kept)
		// Committed or not, it may run already (it went live at
		// pre-resume): a commit must not find it, a settle must say lost.
		if ours {
			_ = a.discard(context.Background(), name)
		}
	}()
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
	go func() { _ = cnet.Tidy(ns) }() // slow, and nothing waits for it
	if sig := e.incoming.resumeSignal; sig != 0 {
		if err := a.rt.Signal(ctx, name, syscall.Signal(sig)); err != nil {
			a.log.Warn("resume signal failed", "name", name, "err", err)
		}
	}
	if e.incoming.nonce != "" {
		// The runc engine's hook must not run at the next restore.
		if err := a.rt.SetActionScript(a.runtimeSpec(e.info.ContainerSpec), ""); err != nil {
			return err
		}
	}
	a.mu.Lock()
	// A post-copy still reads its images; followPages removes them.
	if !a.cfg.KeepImages && !e.info.PagesPending {
		_ = mounts.RemoveAll(e.incoming.dir)
	}
	e.from = e.incoming.from
	e.incoming = nil
	e.info.State = StateRunning
	e.info.Started = time.Now().UTC()
	spec := e.info.ContainerSpec
	allHere := !e.info.PagesPending // else followPages counts it, at its last page
	a.mu.Unlock()
	if allHere {
		a.incomingEnded(e, migration.StatusSuccess)
	}
	a.noticeExit(name)
	a.logsCommitted(name) // logs.go
	if err := a.saveSpec(spec); err != nil {
		return err
	}
	_ = os.Remove(a.incomingPath(name))
	return nil
}

func (a *Agent) abortIncoming(ctx context.Context, name string) error {
	e, err := a.incomingEntry(name)
	if err != nil {
		return err
	}
	a.mu.Lock()
	busy, cancel := e.incoming.busy, e.incoming.cancel
	a.mu.Unlock()
	if busy != nil {
		cancel()
		select {
		case <-busy:
		case <-time.After(a.cfg.CRIUTimeout + 5*time.Second):
			a.log.Warn("image stream handler still busy while aborting", "name", name)
		}
	}
	if r := e.incoming.restorer; r != nil {
		r.Close()
	}
	if pc := e.pages; pc != nil {
		pc.Abort()
	}
	dir := e.incoming.dir
	a.incomingEnded(e, migration.StatusRolledBack)
	err = a.discard(ctx, name)
	a.logsAborted(name)     // logs.go
	kept := a.keepLogs(dir) // a failed restore's log says why
	_ = mounts.RemoveAll(dir)
	a.log.Info("incoming migration aborted", "name", name, "criu_logs", kept)
	return err
}
