package runtime

import (
	"io"
	"os"
	"sync"
	"time"

	runc "github.com/containerd/go-runc"
)

// logSink copies a container's stdout/stderr pipes into its log.
type logSink struct {
	close func() // closes our ends of the pipes
	done  sync.WaitGroup
}

// sink starts copying readers into the container's log (which goes on
// where it was: a container restored here after a failed migration, or
// arriving with its history). A write that fails is dropped, and the
// copier reads on: the container must never block on its output because
// of the log.
func (r *Runtime) sink(name string, readers []io.Reader, closer func()) error {
	r.detachLog(name)
	st, err := r.store(name)
	if err != nil {
		return err
	}
	st.attach()
	s := &logSink{close: closer}
	for _, src := range readers {
		s.done.Add(1)
		go func() {
			defer s.done.Done()
			buf := make([]byte, 32<<10)
			for {
				n, err := src.Read(buf)
				if n > 0 {
					_ = st.write(buf[:n])
				}
				if err != nil {
					return
				}
			}
		}()
	}
	go func() { s.done.Wait(); st.detach() }()
	r.mu.Lock()
	r.logs[name] = s
	r.mu.Unlock()
	return nil
}

// attachLog gives runc fresh pipes for a container's stdio. stdin is a
// pipe whose write end launch closes at once (the program reads EOF, as
// from /dev/null): a /dev/null opened on the host is a file CRIU cannot
// dump, and runc only swaps it for the container's own when it makes /dev
// itself, which it does not here (see writeDev).
func (r *Runtime) attachLog(name string) (runc.IO, error) {
	pio, err := runc.NewPipeIO(0, 0)
	if err != nil {
		return nil, err
	}
	if err := r.sink(name, []io.Reader{pio.Stdout(), pio.Stderr()}, func() { pio.Close() }); err != nil {
		pio.Close()
		return nil, err
	}
	return pio, nil
}

// pipeLogs are the stdout and stderr pipes of a container restored by the
// direct engine: CRIU hands the write ends to the restored tasks.
type pipeLogs struct {
	outR, outW, errR, errW *os.File
}

func (r *Runtime) openPipeLogs(name string) (*pipeLogs, error) {
	p := &pipeLogs{}
	var err error
	if p.outR, p.outW, err = os.Pipe(); err != nil {
		return nil, err
	}
	if p.errR, p.errW, err = os.Pipe(); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

func (p *pipeLogs) close() {
	for _, f := range []*os.File{p.outR, p.outW, p.errR, p.errW} {
		if f != nil {
			f.Close()
		}
	}
}

// adoptLogs starts copying a restored container's output; the write ends
// now live in the container only, so the copiers see EOF when it exits.
func (r *Runtime) adoptLogs(name string, p *pipeLogs) {
	p.outW.Close()
	p.errW.Close()
	if err := r.sink(name, []io.Reader{p.outR, p.errR}, func() { p.outR.Close(); p.errR.Close() }); err != nil {
		p.outR.Close()
		p.errR.Close()
	}
}

// detachLog closes our ends of the pipes. The container side is already
// gone (checkpointed or deleted) when this is called, so the copiers have
// drained what was written.
func (r *Runtime) detachLog(name string) {
	r.takeLog(name).drainAndClose()
}

// detachLogLater takes the container's log off it now and lets the
// copiers drain in the background (off a migration's frozen path); a new
// log attached meanwhile (a restore on the same host) is not touched.
func (r *Runtime) detachLogLater(name string) {
	go r.takeLog(name).drainAndClose()
}

func (r *Runtime) takeLog(name string) *logSink {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.logs[name]
	delete(r.logs, name)
	return s
}

func (s *logSink) drainAndClose() {
	if s == nil {
		return
	}
	done := make(chan struct{})
	go func() { s.done.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
	}
	s.close()
}
