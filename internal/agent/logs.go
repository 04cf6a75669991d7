package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/containerflow/containerflow/internal/httpserve"
	"github.com/containerflow/containerflow/internal/runtime"
)

// A container's log travels with it. Offsets count bytes from the
// container's first output, on whichever host, so they mean the same on
// every host it passes through. Nothing of it is on the frozen path:
//
//   - prepare: the destination holds the container's log (its own output,
//     once restored, is kept apart) and fetches the source's history up to
//     now, while the source keeps running (before the freeze, so that the
//     copy does not compete with the frozen window for the CPUs);
//   - commit: the destination fetches the rest of the source's log, which
//     the source sends once its copy of the container is gone (no byte can
//     follow), puts its own output after it, and tells the source to drop
//     its copy;
//   - the source's migrate request answers once its log was handed over, so
//     the next migration finds the history whole.
//
// CRIU does not copy what was still in the stdout pipe into the restored
// container's new pipe (the pipe is the agent's, inherited at restore):
// those bytes are the source's, read by its copier after the freeze.

// Headers and trailers of the log API.
const (
	HeaderLogStart   = "X-Log-Start"  // offset of the body's first byte
	TrailerLogEnd    = "X-Log-End"    // offset after the body's last byte
	TrailerLogReason = "X-Log-Reason" // why the stream ended (LogEnd*)
)

// Why a log stream ended.
const (
	LogEndDone     = "done"     // not following: that was all there was
	LogEndExited   = "exited"   // the container stopped writing here and is still here: it stopped
	LogEndLeft     = "left"     // the container left this host (migrated, removed) or is leaving
	LogEndCanceled = "canceled" // the request ended
	LogEndGap      = "gap"      // the reader fell more than the whole log behind: go on from the next X-Log-Start
)

// logHandoverTimeout bounds how long the source waits for its destination
// to take the log before answering the migrate request anyway (keeping
// its copy).
const logHandoverTimeout = 10 * time.Second

func (c ContainerSpec) logConfig() runtime.LogConfig {
	return runtime.LogConfig{MaxBytes: c.LogMaxBytes, MaxFiles: c.LogFiles}
}

func (a *Agent) logRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/containers/{name}/logs", a.serveLogs)
	// Source side of a migration: the log of a container leaving, for its
	// destination, which then drops it here.
	mux.Handle("GET /v1/migrations/{name}/logs", a.auth(a.toDestination(a.serveLogHandover)))
	mux.Handle("DELETE /v1/migrations/{name}/logs", a.auth(a.toDestination(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if info, err := a.Get(name); err == nil && info.State != StateMigrating {
			writeErr(w, fmt.Errorf("%w: container %s is %s here", ErrConflict, name, info.State))
			return
		}
		a.rt.DropLog(name)
		writeJSON(w, http.StatusOK, map[string]string{"dropped": name})
	})))
}

func queryInt(r *http.Request, key string) (int64, bool, error) {
	v := r.URL.Query().Get(key)
	if v == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, false, fmt.Errorf("%w: %s=%q must be a number >= 0", ErrBadRequest, key, v)
	}
	return n, true, nil
}

func queryBool(r *http.Request, key string) bool {
	b, _ := strconv.ParseBool(r.URL.Query().Get(key))
	return b
}

// serveLogs sends the container's log from ?from=OFFSET, or its last
// ?tail=N lines, or all that is kept; with ?follow=1 it goes on with new
// output until the container stops or leaves this host.
func (a *Agent) serveLogs(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, err := a.Get(name); err != nil {
		writeErr(w, err)
		return
	}
	from, hasFrom, err := queryInt(r, "from")
	if err != nil {
		writeErr(w, err)
		return
	}
	tail, hasTail, err := queryInt(r, "tail")
	if err != nil {
		writeErr(w, err)
		return
	}
	l, err := a.rt.OpenLog(name)
	if err != nil {
		writeErr(w, err)
		return
	}
	follow := queryBool(r, "follow")
	upTo := int64(-1)
	if !hasFrom && hasTail {
		var end int64
		if from, end, err = l.TailOffset(int(min(tail, 1<<30))); err != nil {
			writeErr(w, err)
			return
		}
		if !follow {
			// The last N lines, as of now: not those written while they
			// are sent as well (tail -n).
			upTo = end
		}
	}
	a.streamLog(w, r, l, from, upTo, follow, func() string {
		if info, err := a.Get(name); err == nil && info.State == StateRunning {
			return LogEndExited
		}
		return LogEndLeft
	})
}

// streamLog writes the log from offset off, flushing each write when
// following; the trailers say where it ended and why. Byte offsets stay
// exact: a reader overtaken by the rotation (more than the whole cap
// behind) gets its stream ended with LogEndGap, and the next request's
// X-Log-Start says where the log goes on.
// Without follow, a non-negative upTo ends it there.
func (a *Agent) streamLog(w http.ResponseWriter, r *http.Request, l *runtime.Log, off, upTo int64, follow bool, why func() string) {
	buf := make([]byte, 32<<10)
	// A follower would hold an agent's shutdown to its bound: it ends
	// (canceled) when the server drains, and the client picks up where it
	// left off from wherever the container is then.
	ctx, stop := context.WithCancel(r.Context())
	defer stop()
	if follow {
		go func() {
			select {
			case <-httpserve.Draining(ctx):
				stop()
			case <-ctx.Done():
			}
		}()
	}
	state := func() runtime.LogState {
		s, _ := l.State()
		if !follow && upTo >= 0 {
			s.End = min(s.End, upTo)
		}
		return s
	}
	s := state()
	// The first bytes are read before the headers say where they start.
	first := max(s.End-off, 1)
	if !follow && upTo >= 0 {
		first = max(s.End-off, 0) // not a byte past the end asked for
	}
	n, at, err := l.ReadAt(buf[:min(int64(len(buf)), first)], off)
	if err != nil && err != io.EOF {
		writeErr(w, err)
		return
	}
	off = at
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Trailer", TrailerLogEnd+", "+TrailerLogReason)
	h.Set(HeaderLogStart, strconv.FormatInt(off, 10))
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	reason := LogEndDone
	write := func(p []byte) bool {
		if _, err := w.Write(p); err != nil {
			return false
		}
		off += int64(len(p))
		return !follow || rc.Flush() == nil
	}
	if !write(buf[:n]) {
		reason = LogEndCanceled
	}
loop:
	for reason == LogEndDone {
		s = state()
	read:
		for off < s.End {
			n, at, err := l.ReadAt(buf[:min(int64(len(buf)), s.End-off)], off)
			switch {
			case at != off:
				reason = LogEndGap
				break loop
			case !write(buf[:n]):
				reason = LogEndCanceled
				break loop
			case err == io.EOF:
				break read
			case err != nil:
				reason = LogEndCanceled
				break loop
			}
		}
		if !follow {
			break
		}
		s, err := l.Wait(ctx, off)
		switch {
		case err != nil:
			reason = LogEndCanceled
		case s.End <= off && !s.Live:
			reason = why()
		}
	}
	h.Set(TrailerLogEnd, strconv.FormatInt(off, 10))
	h.Set(TrailerLogReason, reason)
}

type flushWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = f.rc.Flush()
	}
	return n, err
}

// serveLogHandover sends a destination the log of a container migrating
// from here: ?from=OFFSET on; with ?final=1 only once no byte can follow
// (the container's tasks here are gone).
func (a *Agent) serveLogHandover(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !a.rt.HasLog(name) {
		writeErr(w, fmt.Errorf("%w: no log of %s on %s", ErrNotFound, name, a.cfg.Name))
		return
	}
	from, _, err := queryInt(r, "from")
	if err != nil {
		writeErr(w, err)
		return
	}
	l, err := a.rt.OpenLog(name)
	if err != nil {
		writeErr(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), PostCopyTimeout)
	defer cancel()
	final := queryBool(r, "final")
	for {
		// A container that only just arrived here has its history whole
		// once its own hold ends.
		s, ch := l.State()
		if !s.Held && !(final && s.Live) {
			break
		}
		select {
		case <-ctx.Done():
			writeErr(w, fmt.Errorf("log of %s not complete in time: %w", name, ctx.Err()))
			return
		case <-ch:
		}
	}
	a.streamLog(w, r, l, from, -1, false, nil)
}

// logInherit is an incoming container's log history being fetched.
type logInherit struct {
	committed chan struct{}
	cancel    context.CancelFunc
	done      chan struct{}
}

// inheritLogs holds the log of a container arriving from host from, and
// fetches its history meanwhile (see the top of this file). Logs are not
// worth failing a migration for: without its history the container's log
// here starts with its own output.
func (a *Agent) inheritLogs(s ContainerSpec, from string, plain bool) {
	c, err := a.peerClient(from, plain)
	if err != nil {
		return
	}
	if err := a.rt.HoldLog(s.Name, s.logConfig()); err != nil {
		a.log.Warn("log history of incoming container not kept", "name", s.Name, "err", err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &logInherit{committed: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	a.mu.Lock()
	if a.inLogs == nil {
		a.inLogs = map[string]*logInherit{}
	}
	if old := a.inLogs[s.Name]; old != nil {
		old.cancel()
	}
	a.inLogs[s.Name] = h
	a.mu.Unlock()
	// Here, not in the background: copying up to the whole cap must not
	// compete with the freeze for the CPUs. A history not fetched in time
	// is fetched after the commit, from where this one stopped.
	pctx, cancel := context.WithTimeout(ctx, prepareLogTimeout)
	next, err := a.copyHistory(pctx, c, s.Name, 0, false)
	cancel()
	if err != nil {
		a.log.Info("log history not fetched before the move; fetched after it", "name", s.Name, "err", err)
	}
	go a.fetchHistory(ctx, h, s.Name, c, from, next)
}

// prepareLogTimeout bounds the fetch of an incoming container's history
// at prepare time.
const prepareLogTimeout = 5 * time.Second

func (a *Agent) fetchHistory(ctx context.Context, h *logInherit, name string, c *Client, from string, next int64) {
	defer close(h.done)
	defer h.cancel()
	var err error
	select {
	case <-h.committed:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err == nil {
		next, err = a.copyHistory(ctx, c, name, next, true)
	}
	a.rt.ReleaseLog(name)
	if err == nil {
		if err = c.do(ctx, "DELETE", "/v1/migrations/"+name+"/logs", nil, nil); err != nil {
			a.log.Info("previous host keeps its copy of the log", "name", name, "from", from, "err", err)
			err = nil
		}
	}
	a.mu.Lock()
	if a.inLogs[name] == h {
		delete(a.inLogs, name)
	}
	a.mu.Unlock()
	if err != nil && !errors.Is(err, context.Canceled) {
		a.log.Warn("log history incomplete", "name", name, "from", from, "at", next, "err", err)
	}
}

// copyHistory appends the source's log from offset from to the held log
// here, and returns where it ended; a cut stream is resumed where it
// stopped.
func (a *Agent) copyHistory(ctx context.Context, c *Client, name string, from int64, final bool) (int64, error) {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return from, ctx.Err()
			case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
			}
		}
		var ls *LogStream
		q := "?from=" + strconv.FormatInt(from, 10)
		if final {
			q += "&final=1"
		}
		ls, err = c.openLog(ctx, "/v1/migrations/"+name+"/logs"+q)
		var apiErr *APIError
		if errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound {
			return from, nil // the source kept no log of it
		}
		if err != nil {
			continue
		}
		buf := make([]byte, 64<<10)
		at := ls.Start
		for {
			n, rerr := io.ReadFull(ls, buf)
			if n > 0 {
				if err = a.rt.AppendLog(name, at, buf[:n]); err != nil {
					break
				}
				at += int64(n)
				from = at
			}
			if rerr != nil {
				break
			}
		}
		ls.Close()
		if err != nil {
			return from, err
		}
		_, reason, ok := ls.End()
		switch {
		case ok && reason == LogEndGap:
			attempt = -1 // not a failure: go on from the next byte kept
			continue
		case ok:
			return from, nil
		}
		err = io.ErrUnexpectedEOF
	}
	return from, err
}

// logsCommitted lets the fetch of the rest of the history start.
func (a *Agent) logsCommitted(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if h := a.inLogs[name]; h != nil {
		select {
		case <-h.committed:
		default:
			close(h.committed)
		}
	}
}

// logsAborted stops fetching a history no one will read, and removes the
// log of the container that did not arrive.
func (a *Agent) logsAborted(name string) {
	a.mu.Lock()
	h := a.inLogs[name]
	a.mu.Unlock()
	if h != nil {
		h.cancel()
		<-h.done
	}
	a.rt.DropLog(name)
}

// awaitLogHandover waits, after a successful migration from here, for
// the destination to have taken the container's log.
func (a *Agent) awaitLogHandover(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), logHandoverTimeout)
	defer cancel()
	if err := a.rt.WaitLogDropped(ctx, name); err != nil {
		a.log.Warn("destination did not take the container's log; a copy stays here", "name", name, "err", err)
	}
}
