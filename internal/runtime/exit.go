package runtime

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// How a container's exit is learnt. runc detaches: once `runc run -d` (or
// restore -d) returns, runc has exited and the container's init is an
// orphan. The runtime makes its process a child subreaper, so the init is
// re-parented to it rather than to the machine's init, and waits for it:
// that wait gives the exit status, and reaps it. A directly restored init
// is already the agent's child (CRIU restores it as its sibling). A
// container adopted by a restarted agent is nobody's child here: its end
// is seen through a pidfd, without a status.

// ExitStatus is how a container's init ended.
type ExitStatus struct {
	Pid int `json:"pid"`
	// Known is false when the init was not this process's child (adopted
	// after an agent restart): it is gone, but its status went elsewhere.
	Known bool `json:"known"`
	// Code is the exit code, or 128+signal for a killed init (as shells
	// report it).
	Code   int       `json:"code"`
	Signal int       `json:"signal,omitempty"`
	At     time.Time `json:"at"`
}

// exitName is a bundle's record of its init's end, so that a restarted
// agent still knows how a container it finds stopped ended.
const exitName = "exit-status.json"

// BecomeSubreaper makes the calling process a child subreaper (see above).
// It is process-wide; a process that never starts containers needs it
// not.
func BecomeSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// SetExitHandler sets the function told of every watched init's end
// (called from its own goroutine). Set it before starting containers.
func (r *Runtime) SetExitHandler(f func(name string, st ExitStatus)) {
	r.mu.Lock()
	r.onExit = f
	r.mu.Unlock()
}

// Watch follows the end of a container's init. Every init the runtime
// starts is watched already; callers watch the ones they adopt.
func (r *Runtime) Watch(name string, pid int) {
	go func() {
		st := waitInit(pid)
		// Under bundleMu: Delete must not remove the bundle between the
		// check and the write (the record would be left alone in it).
		r.bundleMu.Lock()
		closed := r.closed
		if _, err := os.Stat(filepath.Join(r.BundleDir(name), "config.json")); err == nil && !closed {
			// Keyed by pid: a late record never describes a newer
			// container of the same name.
			_ = writeJSON(filepath.Join(r.BundleDir(name), exitName), st)
		}
		r.bundleMu.Unlock()
		if closed {
			return
		}
		r.mu.Lock()
		f := r.onExit
		r.mu.Unlock()
		if f != nil {
			f(name, st)
		}
	}()
}

// Close stops the runtime acting on the inits it watches: their ends are
// neither recorded nor reported. The agent that owned it is going away,
// and whoever runs next adopts the containers and watches them itself
// (in tests, in the same process: two runtimes on one bundle would race
// its removal against a late exit record).
func (r *Runtime) Close() {
	r.bundleMu.Lock()
	r.closed = true
	r.bundleMu.Unlock()
}

// LastExit returns how the container's init pid ended, if the runtime saw
// it; pid 0 stands for its last init, whichever it was (runc does not say
// the pid of a stopped container).
func (r *Runtime) LastExit(name string, pid int) (ExitStatus, bool) {
	var st ExitStatus
	b, err := os.ReadFile(filepath.Join(r.BundleDir(name), exitName))
	if err != nil || json.Unmarshal(b, &st) != nil || (pid != 0 && st.Pid != pid) {
		return ExitStatus{}, false
	}
	return st, true
}

// waitInit blocks until pid ends: a wait for a child (which reaps it), else
// a pidfd that becomes readable when the process ends.
func waitInit(pid int) ExitStatus {
	st := ExitStatus{Pid: pid}
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err == nil {
			st.Known = true
			switch {
			case ws.Exited():
				st.Code = ws.ExitStatus()
			case ws.Signaled():
				st.Signal = int(ws.Signal())
				st.Code = 128 + st.Signal
			}
			st.At = time.Now().UTC()
			return st
		}
		break // ECHILD: not ours
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err == nil {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(fds, -1); !errors.Is(err, unix.EINTR) {
				break
			}
		}
		unix.Close(fd)
	}
	st.At = time.Now().UTC()
	return st
}
