package agent

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/containerflow/containerflow/internal/runtime"
)

// A container whose init ends is "exited": it keeps its name, address,
// namespace, bundle and log (`container logs` still works) until it is
// removed — at once with auto_remove (`run --rm`) — or restarted by its
// restart policy.

// StateExited is a container whose init has ended.
const StateExited = "exited"

// stateRemoving and stateRestarting keep an exited container from being
// removed or restarted twice.
const (
	stateRemoving   = "removing"
	stateRestarting = "restarting"
)

// Lifecycle is what a client asks of a container's end.
type Lifecycle struct {
	// AutoRemove removes the container (and releases its name and
	// address) when it exits.
	AutoRemove bool `json:"auto_remove,omitempty"`
	// Restart is "" / "no", or "on-failure[:N]": start it again when it
	// exits with a non-zero code, at most N times (unlimited without N).
	Restart string `json:"restart,omitempty"`
}

// ExitInfo is how an exited container ended.
type ExitInfo struct {
	// Known is false when the exit code could not be had: the container
	// was started by an earlier run of the agent, whose child it was.
	Known bool `json:"known"`
	// Code is the exit code; 128+N for a container killed by signal N.
	Code   int       `json:"code"`
	Signal int       `json:"signal,omitempty"`
	At     time.Time `json:"at,omitzero"`
}

// String is the form `container ls` shows.
func (x *ExitInfo) String() string {
	switch {
	case x == nil:
		return ""
	case !x.Known:
		return "exit code unknown"
	case x.Signal != 0:
		return fmt.Sprintf("signal %d", x.Signal)
	}
	return "code " + strconv.Itoa(x.Code)
}

// RunStatus is the lifecycle part of ContainerInfo.
type RunStatus struct {
	Exit     *ExitInfo `json:"exit,omitempty"`
	Restarts int       `json:"restarts,omitempty"`
}

// restartLimit parses a restart policy: whether to restart on failure, and
// at most how many times (0: unlimited).
func restartLimit(policy string) (bool, int, error) {
	switch {
	case policy == "" || policy == "no":
		return false, 0, nil
	case policy == "on-failure":
		return true, 0, nil
	case strings.HasPrefix(policy, "on-failure:"):
		n, err := strconv.Atoi(strings.TrimPrefix(policy, "on-failure:"))
		if err != nil || n < 1 {
			return false, 0, fmt.Errorf("%w: restart %q: want on-failure:N with N >= 1", ErrBadRequest, policy)
		}
		return true, n, nil
	}
	return false, 0, fmt.Errorf("%w: restart %q (no, on-failure or on-failure:N)", ErrBadRequest, policy)
}

func exitInfo(st runtime.ExitStatus) *ExitInfo {
	return &ExitInfo{Known: st.Known, Code: st.Code, Signal: st.Signal, At: st.At}
}

// containerExited is the runtime's exit handler.
func (a *Agent) containerExited(name string, st runtime.ExitStatus) {
	a.mu.Lock()
	e, ok := a.containers[name]
	// Anything but a running container with this init is not an exit the
	// user should see: a migration's source stopping, a removal, an init
	// before Run recorded it (noticeExit catches that one).
	if !ok || e.info.State != StateRunning || e.info.Pid != st.Pid {
		a.mu.Unlock()
		return
	}
	e.info.State, e.info.Exit = StateExited, exitInfo(st)
	spec, restarts := e.info.ContainerSpec, e.info.Restarts
	a.mu.Unlock()
	a.log.Info("container exited", "name", name, "pid", st.Pid, "exit", exitInfo(st).String())
	a.afterExit(spec, st, restarts)
}

// noticeExit applies an exit the handler saw before the container's init
// was recorded (a program that ends at once), once it is.
func (a *Agent) noticeExit(name string) {
	a.mu.Lock()
	e, ok := a.containers[name]
	var pid int
	if ok {
		pid = e.info.Pid
	}
	a.mu.Unlock()
	if !ok || pid == 0 {
		return
	}
	if st, seen := a.rt.LastExit(name, pid); seen {
		a.containerExited(name, st)
	}
}

// restartsAfter says whether the restart policy starts a container again
// after this exit.
func restartsAfter(policy string, x *ExitInfo, restarts int) bool {
	again, limit, _ := restartLimit(policy)
	return again && x != nil && x.Known && x.Code != 0 && (limit == 0 || restarts < limit)
}

func (a *Agent) afterExit(spec ContainerSpec, st runtime.ExitStatus, restarts int) {
	switch {
	case restartsAfter(spec.Restart, exitInfo(st), restarts):
		go a.restart(spec.Name, st.Pid)
	case spec.AutoRemove:
		go a.removeExited(spec.Name, st.Pid)
	}
}

// takeExited marks an exited container (still the one whose init was pid)
// as being handled, or says it is not there any more.
func (a *Agent) takeExited(name string, pid int, state string) (*entry, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.containers[name]
	if !ok || e.info.State != StateExited || e.info.Pid != pid {
		return nil, false
	}
	e.info.State = state
	return e, true
}

func (a *Agent) removeExited(name string, pid int) {
	if _, ok := a.takeExited(name, pid, stateRemoving); !ok {
		return
	}
	ctx := context.Background()
	if err := a.discard(ctx, name); err != nil {
		a.log.Warn("auto-remove", "name", name, "err", err)
	}
	_ = a.forget(ctx, name)
	a.log.Info("container removed on exit", "name", name)
}

// restart starts an exited container again in its namespace, from a fresh
// bundle (its writable directories start empty, as at its first start);
// its log goes on.
func (a *Agent) restart(name string, pid int) {
	e, ok := a.takeExited(name, pid, stateRestarting)
	if !ok {
		return
	}
	a.mu.Lock()
	spec := e.info.ContainerSpec
	a.mu.Unlock()
	ctx := context.Background()
	_ = a.rt.Delete(ctx, name)
	newPid, err := a.rt.Run(ctx, a.runtimeSpec(spec))
	a.mu.Lock()
	if err != nil {
		e.info.State = StateExited
		a.mu.Unlock()
		a.log.Error("restart failed", "name", name, "err", err)
		return
	}
	e.info.State, e.info.Pid, e.info.Restarts = StateRunning, newPid, e.info.Restarts+1
	e.info.Started = time.Now().UTC()
	a.mu.Unlock()
	a.log.Info("container restarted", "name", name, "pid", newPid, "restarts", e.info.Restarts)
	a.noticeExit(name)
}

// adoptLifecycle runs once adopt has registered what a previous run left:
// a container found stopped is shown exited (with its code if that run saw
// it end), a running one is watched, and the registry is told this host
// runs them.
func (a *Agent) adoptLifecycle() {
	var specs []ContainerSpec
	for _, c := range a.List() {
		specs = append(specs, c.ContainerSpec)
		st, err := a.rt.State(context.Background(), c.Name)
		if err != nil {
			continue
		}
		if st.Status == "stopped" {
			ex, seen := a.rt.LastExit(c.Name, 0)
			if !seen {
				ex = runtime.ExitStatus{}
			}
			a.mu.Lock()
			if e, ok := a.containers[c.Name]; ok && e.info.State == StateRunning {
				e.info.State, e.info.Exit = StateExited, exitInfo(ex)
			}
			a.mu.Unlock()
			continue
		}
		a.rt.Watch(c.Name, st.Pid)
	}
	a.claimAdopted(specs)
}
