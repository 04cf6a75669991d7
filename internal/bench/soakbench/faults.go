package soakbench

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerflow/containerflow/internal/nsrun"
	"github.com/containerflow/containerflow/internal/testbed"
)

// Fault kinds. Every one is injected from outside the agents, on real
// processes, the way an operator or a crash would: no test hook.
const (
	FaultCRIUKillDump    = "criu-kill-dump"    // SIGKILL the source's `criu swrk`
	FaultCRIUKillRestore = "criu-kill-restore" // SIGKILL the destination's `criu swrk`
	FaultAgentKillSource = "agent-kill-source" // SIGKILL the source agent, restarted 100 ms later
	FaultAgentKillDest   = "agent-kill-dest"   // SIGKILL the destination agent, restarted 100 ms later
	FaultControllerKill  = "controller-kill"   // SIGKILL the switch controller, restarted after
	FaultImageCorrupt    = "image-corrupt"     // overwrite bytes of an image file being written
	FaultStreamCut       = "stream-cut"        // ss -K the source's connections to the destination agent
	FaultMgmtLoss        = "mgmt-loss"         // 100% loss on the destination's management link for 1-3 s
	FaultNetnsDelete     = "netns-delete"      // delete the destination's container namespace during prepare
)

// AllFaults is the default mix, drawn uniformly.
var AllFaults = []string{FaultCRIUKillDump, FaultCRIUKillRestore, FaultAgentKillSource, FaultAgentKillDest,
	FaultControllerKill, FaultImageCorrupt, FaultStreamCut, FaultMgmtLoss, FaultNetnsDelete}

// Fault is one injected fault as the JSON reports it.
type Fault struct {
	Kind string `json:"kind"`
	// Target names what was hit: a host, a pid, a file.
	Target string `json:"target,omitempty"`
	// DelayMs is the drawn delay, from the trigger named in Trigger.
	DelayMs float64 `json:"delay_ms"`
	Trigger string  `json:"trigger"`
	// Fired: the fault was applied. A fault whose trigger never came (the
	// migration was over before it) is reported, unfired.
	Fired bool `json:"fired"`
	// AtMs is when it was applied, from the migration request.
	AtMs float64 `json:"at_ms,omitempty"`
	// Phase is where the migration was at that moment, from the timing
	// record's timestamps (same clock: one machine); "unknown" without one.
	Phase  string `json:"phase,omitempty"`
	Detail string `json:"detail,omitempty"`
	// Error: the fault could not be injected (a fault of the soak itself,
	// which fails it: the migration ran without the fault it was meant to
	// survive).
	Error string `json:"error,omitempty"`
	// SocketsInRepair: a criu-kill-dump that landed after CRIU had put
	// the container's TCP sockets in repair mode (its dump log says so).
	SocketsInRepair bool `json:"sockets_in_repair,omitempty"`

	at time.Time
}

// draw picks the fault's parameters; the same seed gives the same faults.
func draw(rng *rand.Rand, kinds []string) *Fault {
	f := &Fault{Kind: kinds[rng.IntN(len(kinds))]}
	ms := func(lo, hi int) float64 { return float64(lo + rng.IntN(hi-lo+1)) }
	switch f.Kind {
	case FaultCRIUKillDump, FaultCRIUKillRestore:
		// CRIU is started in prepare and does its work ~100-300 ms later:
		// the range covers idle, working and (for the restore) finished.
		f.DelayMs, f.Trigger = ms(0, 120), "criu swrk started"
	case FaultImageCorrupt:
		f.DelayMs, f.Trigger = ms(0, 40), "first image file"
		if rng.IntN(2) == 0 {
			f.Target = "source"
		} else {
			f.Target = "destination"
		}
	case FaultNetnsDelete:
		f.DelayMs, f.Trigger = ms(0, 30), "destination namespace created"
	case FaultMgmtLoss:
		f.DelayMs, f.Trigger = ms(0, 150), "request"
		f.Detail = fmt.Sprintf("for %d ms", 1000+rng.IntN(2001))
	default:
		// A migration takes 150-300 ms here: the range covers all of it.
		f.DelayMs, f.Trigger = ms(0, 250), "request"
	}
	return f
}

// supervisorDelay is how long a killed agent stays down: systemd's
// default RestartSec.
const supervisorDelay = 100 * time.Millisecond

// injector applies one fault during one migration and undoes what must
// be undone (restarts, impairments) afterwards.
type injector struct {
	s        *soak
	f        *Fault
	name     string // container
	from, to string
	start    time.Time
	done     chan struct{}
	// undo restores the testbed once the migration has answered.
	undo []func() error
}

func (s *soak) inject(ctx context.Context, f *Fault, name, from, to string, start time.Time) *injector {
	in := &injector{s: s, f: f, name: name, from: from, to: to, start: start, done: make(chan struct{})}
	go func() {
		defer close(in.done)
		if err := in.run(ctx); err != nil {
			f.Error = err.Error()
		}
	}()
	return in
}

func (in *injector) fired(target string) {
	in.f.Fired, in.f.at = true, time.Now()
	in.f.AtMs = float64(in.f.at.Sub(in.start).Microseconds()) / 1000
	if target != "" {
		in.f.Target = target
	}
}

// wait sleeps d unless ctx ends first (the migration answered).
func wait(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

func (in *injector) delay() time.Duration {
	return time.Duration(in.f.DelayMs * float64(time.Millisecond))
}

func (in *injector) run(ctx context.Context) error {
	tb := in.s.tb
	switch in.f.Kind {
	case FaultAgentKillSource, FaultAgentKillDest:
		host := in.from
		if in.f.Kind == FaultAgentKillDest {
			host = in.to
		}
		if !wait(ctx, in.delay()) {
			return nil
		}
		pid := tb.AgentPID(host)
		if err := tb.KillAgent(host); err != nil {
			return err
		}
		in.fired(fmt.Sprintf("%s agent pid %d", host, pid))
		// Restarted as its supervisor would (docs/deploy.md's unit:
		// systemd's Restart=on-failure, RestartSec 100 ms), not once the
		// migration answered: a source waits for a destination that went
		// live to come back and say so (agent/incoming_record.go).
		time.Sleep(supervisorDelay)
		if err := tb.StartAgent(in.s.o.Binary, host); err != nil {
			in.undo = append(in.undo, func() error { return tb.StartAgent(in.s.o.Binary, host) })
			return fmt.Errorf("restart the %s agent: %w", host, err)
		}
	case FaultControllerKill:
		if !wait(ctx, in.delay()) {
			return nil
		}
		pid := tb.ControllerPID()
		if err := tb.KillController(); err != nil {
			return err
		}
		in.fired(fmt.Sprintf("controller pid %d", pid))
		in.undo = append(in.undo, func() error { return tb.RestartController(in.s.o.Binary) })
	case FaultMgmtLoss:
		if !wait(ctx, in.delay()) {
			return nil
		}
		link := in.to + "-mgmt"
		if err := tb.Impair(link, testbed.Impairment{Loss: 100, Seed: 1}); err != nil {
			return err
		}
		in.fired(link)
		var hold int
		fmt.Sscanf(in.f.Detail, "for %d ms", &hold)
		// The link comes back after its hold whether or not the migration
		// has answered: a migration stuck behind the loss would otherwise
		// keep it down until its own timeout (this was soak finding 2).
		// ctx is not consulted: it ends when the migration answers.
		time.Sleep(time.Until(in.f.at.Add(time.Duration(hold) * time.Millisecond)))
		return tb.ClearImpairment(link)
	case FaultStreamCut:
		if !wait(ctx, in.delay()) {
			return nil
		}
		// The source agent's connections to the destination agent: the
		// prepare request or the image stream, whichever is open.
		dst, _ := tb.Spec(in.to)
		ns, _ := tb.Netns(in.from)
		out, err := exec.Command("ip", "netns", "exec", ns, "ss", "-K", "-t", "dst", dst.MgmtIP.String(),
			"dport", "=", strconv.Itoa(testbed.AgentPort)).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ss -K: %v: %s", err, out)
		}
		n := max(0, strings.Count(string(out), "\n")-1) // minus the header
		in.fired(fmt.Sprintf("%s -> %s:%d", in.from, dst.MgmtIP, testbed.AgentPort))
		in.f.Detail = fmt.Sprintf("%d connections killed", n)
	case FaultNetnsDelete:
		ns := tb.ContainerNetnsPrefix(in.to) + in.name
		if !poll(ctx, func() bool { _, err := os.Stat(nsrun.Path(ns)); return err == nil }) {
			return nil
		}
		if !wait(ctx, in.delay()) {
			return nil
		}
		if err := nsrun.Delete(ns); err != nil {
			return err
		}
		in.fired(ns)
	case FaultCRIUKillDump, FaultCRIUKillRestore:
		host, dir := in.from, in.name+"-"
		if in.f.Kind == FaultCRIUKillRestore {
			host, dir = in.to, "in-"+in.name+"-"
		}
		part := filepath.Join(in.s.imagesDir(host), dir)
		var pid int
		if !poll(ctx, func() bool { pid = findCRIU(part); return pid != 0 }) {
			return nil
		}
		if !wait(ctx, in.delay()) {
			return nil
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			if errors.Is(err, syscall.ESRCH) {
				in.f.Detail = fmt.Sprintf("criu %d had exited before the kill", pid)
				return nil
			}
			return fmt.Errorf("kill criu %d: %w", pid, err)
		}
		in.fired(fmt.Sprintf("criu swrk pid %d on %s", pid, host))
	case FaultImageCorrupt:
		host, dir := in.from, in.name+"-"
		if in.f.Target == "destination" {
			host, dir = in.to, "in-"+in.name+"-"
		}
		glob := filepath.Join(in.s.imagesDir(host), dir+"*", "images", "*")
		var files []string
		if !poll(ctx, func() bool { files, _ = filepath.Glob(glob); return len(files) > 0 }) {
			return nil
		}
		if !wait(ctx, in.delay()) {
			return nil
		}
		files, _ = filepath.Glob(glob)
		if len(files) == 0 {
			in.f.Detail = "the images were gone before the corruption"
			return nil
		}
		file := files[int(in.f.DelayMs)%len(files)]
		off, err := corrupt(file)
		if errors.Is(err, fs.ErrNotExist) {
			in.f.Detail = file + " was gone before the corruption"
			return nil
		}
		if err != nil {
			return err
		}
		in.fired(file)
		in.f.Detail = fmt.Sprintf("%s image: 64 bytes inverted at offset %d", in.f.Target, off)
	}
	return nil
}

// corrupt inverts 64 bytes in the middle of the file, in place: the
// writer keeps its offset, so what it writes later is not overwritten.
func corrupt(file string) (int64, error) {
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	off := st.Size() / 2
	buf := make([]byte, 64)
	n, _ := f.ReadAt(buf, off)
	if n == 0 {
		// An empty file yet: garbage where its first bytes will be read.
		n, off = len(buf), 0
	}
	for i := range buf[:n] {
		buf[i] = ^buf[i]
	}
	_, err = f.WriteAt(buf[:n], off)
	return off, err
}

// poll checks cond every millisecond until it holds or ctx ends.
func poll(ctx context.Context, cond func() bool) bool {
	for {
		if cond() {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Millisecond):
		}
	}
}

// findCRIU returns the pid of a `criu swrk` holding a file under the path
// prefix part (its images or work directory), 0 if none.
func findCRIU(part string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if !strings.Contains(string(cmd), "criu") || !strings.Contains(string(cmd), "swrk") {
			continue
		}
		fds, _ := os.ReadDir(filepath.Join("/proc", e.Name(), "fd"))
		for _, fd := range fds {
			t, _ := os.Readlink(filepath.Join("/proc", e.Name(), "fd", fd.Name()))
			if strings.HasPrefix(t, part) {
				return pid
			}
		}
	}
	return 0
}
