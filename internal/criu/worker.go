package criu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/containerflow/containerflow/internal/nsrun"
)

// A Worker is one `criu swrk` process started ahead of time and waiting
// for its single request on a socket pair. Starting CRIU costs an exec
// through the private loader and the dynamic linking of a dozen libraries;
// a migration starts its workers while the container still runs, so none
// of that happens while it is frozen. The RPC also carries CRIU's
// notifications (pre-resume, post-restore, ...), answered in-process
// instead of by an action script calling back into the agent.
//
// A Worker serves one Dump or one Restore; Close kills it if it is still
// waiting.
type Worker struct {
	cmd  *exec.Cmd
	conn *net.UnixConn

	mu     sync.Mutex
	waited bool
	state  *os.ProcessState
	werr   error
}

// WorkerOpts says how to start a worker.
type WorkerOpts struct {
	// Files are passed to CRIU as fds 4, 5, ... (fd 3 is the RPC socket),
	// in this order: the files a restore inherits (InheritFd) refer to
	// them by number. The caller keeps ownership.
	Files []*os.File
	// Cgroups are cgroup directories the worker joins before it gets its
	// request; a restore's tasks are forked by CRIU and start in them.
	Cgroups []string
	// Stderr receives what CRIU prints outside its log (nil: discarded).
	Stderr *os.File
	// Netns, when set, is the network namespace CRIU runs in (its page
	// server listens there); the container's own namespace is passed to it
	// separately.
	Netns string
	// Nice, when negative, raises CRIU's CPU priority (and that of what it
	// forks) above the host's ordinary work: a migration's frozen window
	// should not wait for a busy neighbour's time slice.
	Nice int
}

// FirstFileFD is the fd number of WorkerOpts.Files[0] inside CRIU.
const FirstFileFD = 4

// Pid is the worker's process.
func (w *Worker) Pid() int { return w.cmd.Process.Pid }

// StartWorker starts `criu swrk` and leaves it waiting for a request.
func (b Binary) StartWorker(o WorkerOpts) (*Worker, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("criu socket pair: %w", err)
	}
	cli := os.NewFile(uintptr(fds[0]), "criu-client")
	srv := os.NewFile(uintptr(fds[1]), "criu-server")
	defer srv.Close()
	fc, err := net.FileConn(cli)
	cli.Close()
	if err != nil {
		return nil, err
	}
	cmd := b.Command("swrk", "3")
	cmd.ExtraFiles = append([]*os.File{srv}, o.Files...)
	if o.Stderr != nil { // a nil *os.File would close CRIU's fd 2, not discard it
		cmd.Stderr = o.Stderr
	}
	// Its own process group: a signal meant for the agent's terminal must
	// not kill a CRIU that holds a frozen container.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := nsrun.Start(o.Netns, cmd); err != nil {
		fc.Close()
		return nil, fmt.Errorf("start %s swrk: %w", b.Path, err)
	}
	w := &Worker{cmd: cmd, conn: fc.(*net.UnixConn)}
	if o.Nice != 0 {
		if err := unix.Setpriority(unix.PRIO_PROCESS, cmd.Process.Pid, o.Nice); err != nil {
			w.Close()
			return nil, fmt.Errorf("criu priority %d: %w", o.Nice, err)
		}
	}
	for _, cg := range o.Cgroups {
		if err := os.WriteFile(cg+"/cgroup.procs", []byte(fmt.Sprint(cmd.Process.Pid)), 0); err != nil {
			w.Close()
			return nil, fmt.Errorf("move criu into %s: %w", cg, err)
		}
	}
	// A version request kept open proves CRIU is loaded and listening, so
	// a worker returned from here answers its real request at once.
	if err := w.send(&rpc.CriuReq{Type: rpc.CriuReqType_VERSION.Enum(), KeepOpen: proto.Bool(true)}); err != nil {
		w.Close()
		return nil, fmt.Errorf("criu swrk: %w", err)
	}
	buf := make([]byte, 4096)
	if _, _, _, _, err := w.conn.ReadMsgUnix(buf, nil); err != nil {
		w.Close()
		return nil, fmt.Errorf("criu swrk did not answer: %w", err)
	}
	return w, nil
}

// Notify is called for each of CRIU's notifications ("pre-dump",
// "network-lock", "setup-namespaces", "pre-resume", "post-restore", ...);
// pid is the restored root task where CRIU says it. Returning an error
// makes CRIU abort the operation.
type Notify func(script string, pid int) error

// ErrFailed wraps CRIU's own failure report; the log has the details.
var ErrFailed = errors.New("criu failed")

// Dump sends a dump request and waits for the result.
func (w *Worker) Dump(ctx context.Context, opts *rpc.CriuOpts, n Notify) error {
	_, err := w.do(ctx, rpc.CriuReqType_DUMP, opts, n)
	return err
}

// Restore sends a restore request and returns the restored root task's pid.
func (w *Worker) Restore(ctx context.Context, opts *rpc.CriuOpts, n Notify) (int, error) {
	resp, err := w.do(ctx, rpc.CriuReqType_RESTORE, opts, n)
	if err != nil {
		return 0, err
	}
	return int(resp.GetRestore().GetPid()), nil
}

func (w *Worker) do(ctx context.Context, t rpc.CriuReqType, opts *rpc.CriuOpts, n Notify) (*rpc.CriuResp, error) {
	// A cancelled context kills CRIU and ends the pending read: a task
	// CRIU was restoring may still hold CRIU's end of the socket, so the
	// read would not see EOF.
	stop := context.AfterFunc(ctx, func() {
		_ = w.cmd.Process.Kill()
		_ = w.conn.SetReadDeadline(time.Now())
	})
	defer stop()
	if err := w.send(&rpc.CriuReq{Type: t.Enum(), Opts: opts}); err != nil {
		return nil, w.failure(ctx, fmt.Errorf("send %s request: %w", t, err))
	}
	buf := make([]byte, 64<<10)
	for {
		nr, _, _, _, err := w.conn.ReadMsgUnix(buf, nil)
		if err == nil && nr == 0 {
			err = errors.New("criu closed the connection")
		}
		if err != nil {
			return nil, w.failure(ctx, err)
		}
		resp := &rpc.CriuResp{}
		if err := proto.Unmarshal(buf[:nr], resp); err != nil {
			return nil, w.failure(ctx, fmt.Errorf("bad response: %w", err))
		}
		if !resp.GetSuccess() {
			// CRIU's first error line, when it sends one, says more than
			// its errno (often 0).
			msg := strings.ToLower(resp.GetType().String())
			if e := resp.GetCrErrno(); e != 0 {
				msg += fmt.Sprintf(": %v", syscall.Errno(e))
			}
			if s := resp.GetCrErrmsg(); s != "" && !isHarmless(s) {
				msg += ": " + strings.TrimSpace(s)
			}
			w.wait()
			return nil, fmt.Errorf("%w: %s", ErrFailed, msg)
		}
		if resp.GetType() != rpc.CriuReqType_NOTIFY {
			// The work is done and its files closed; CRIU still has to
			// tear itself down (tens of ms here), which no one waits for.
			_ = w.conn.CloseWrite()
			go w.wait()
			return resp, nil
		}
		ok := true
		if n != nil {
			nt := resp.GetNotify()
			if err := n(nt.GetScript(), int(nt.GetPid())); err != nil {
				ok = false
			}
		}
		if err := w.send(&rpc.CriuReq{Type: rpc.CriuReqType_NOTIFY.Enum(), NotifySuccess: proto.Bool(ok)}); err != nil {
			return nil, w.failure(ctx, fmt.Errorf("answer notification: %w", err))
		}
	}
}

func (w *Worker) send(req *rpc.CriuReq) error {
	b, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	_, err = w.conn.Write(b)
	return err
}

// failure describes a lost connection with the worker, with how it ended.
func (w *Worker) failure(ctx context.Context, err error) error {
	_ = w.cmd.Process.Kill()
	werr := w.wait()
	if ctx.Err() != nil {
		return fmt.Errorf("%w: killed: %v", ErrFailed, ctx.Err())
	}
	if werr != nil {
		return fmt.Errorf("%w: %v (%v)", ErrFailed, werr, err)
	}
	return fmt.Errorf("%w: %v", ErrFailed, err)
}

// wait reaps the worker once; the error says how it exited if not cleanly.
func (w *Worker) wait() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.waited {
		w.waited = true
		w.state, w.werr = w.cmd.Process.Wait()
		w.conn.Close()
	}
	if w.werr != nil {
		return w.werr
	}
	if !w.state.Success() {
		return errors.New(w.state.String())
	}
	return nil
}

// Close kills a worker that has not finished and reaps it.
func (w *Worker) Close() {
	w.mu.Lock()
	done := w.waited
	w.mu.Unlock()
	if !done {
		_ = w.cmd.Process.Kill()
		_ = w.wait()
	}
}
