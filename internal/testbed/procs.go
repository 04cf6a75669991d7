package testbed

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// The testbed's daemons are started detached (Setsid) and may outlive the
// process that started them, so they are found again by what identifies
// them on their command line: the unix socket each one serves.

// AgentPID returns the pid of host's agent, 0 when none runs.
func (tb *Testbed) AgentPID(host string) int {
	return findServe(tb.AgentSocket(host))
}

// ControllerPID returns the pid of the switch controller, 0 when none runs.
func (tb *Testbed) ControllerPID() int {
	return findServe(tb.ControllerSocket())
}

// findServe finds a `cflow ... serve ... --socket SOCKET` process.
func findServe(socket string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0})
		serve := false
		for i, a := range args {
			if string(a) == "serve" {
				serve = true
			}
			if serve && string(a) == "--socket" && i+1 < len(args) && string(args[i+1]) == socket {
				return pid
			}
		}
	}
	return 0
}

// KillAgent kills host's agent with SIGKILL, as a crash would, and waits
// until it is gone. Its containers keep running (a new agent adopts them).
func (tb *Testbed) KillAgent(host string) error {
	return killWait(tb.AgentPID(host))
}

// KillController kills the switch controller with SIGKILL and waits until
// it is gone. The data plane keeps forwarding from its pinned tables.
func (tb *Testbed) KillController() error {
	return killWait(tb.ControllerPID())
}

func killWait(pid int) error {
	if pid == 0 {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
		return err
	}
	// Gone means reaped or a zombie: either way it serves nothing more.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || bytes.Contains(st, []byte(") Z ")) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("pid %d still alive 10 s after SIGKILL", pid)
}

// StartAgent starts host's agent (after KillAgent, or a crash) and waits
// until it answers. It steers through the controller whenever the testbed
// has one, even one that is down right now, as StartAgents chose at Up:
// falling back to the bare tables would leave the controller's desired
// state behind once it returns.
func (tb *Testbed) StartAgent(bin, host string) error {
	if !tb.IsHost(host) {
		return tb.notHost(host)
	}
	if tb.AgentPID(host) != 0 {
		return fmt.Errorf("agent on %s already runs", host)
	}
	steer := tb.steerArg()
	if _, err := os.Stat(filepath.Join(tb.SwitchDir(), "switch.yaml")); err == nil && tb.Switch == SwitchEBPF {
		steer = tb.ControllerAPIURL()
		if !tb.NoAuth {
			steer += "?token_file=" + tb.TokenFile()
		}
	}
	if err := tb.startAgent(bin, host, steer); err != nil {
		return err
	}
	if err := waitSocket(tb.AgentSocket(host), 30*time.Second); err != nil {
		return fmt.Errorf("agent on %s did not come up (see %s): %w", host, filepath.Join(tb.HostDir(host), "agent.log"), err)
	}
	return nil
}

// RestartController starts the switch controller again after
// KillController (it takes over the pinned data plane and its saved
// state) and waits until it answers.
func (tb *Testbed) RestartController(bin string) error {
	if tb.ControllerPID() != 0 {
		return fmt.Errorf("switch controller already runs")
	}
	if err := tb.StartController(bin); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return tb.ControllerClient().WaitReady(ctx)
}
