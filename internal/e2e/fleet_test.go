package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/agent"
	"github.com/containerflow/containerflow/internal/controller"
	"github.com/containerflow/containerflow/internal/fleet"
	"github.com/containerflow/containerflow/internal/nsrun"
	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/testbed/tbtest"
	"github.com/containerflow/containerflow/internal/workload/stream"
)

// fleetBed is a testbed whose agents registered with the controller's
// fleet, with a client of each.
type fleetBed struct {
	tb   *testbed.Testbed
	self string
	fc   fleet.Client
	ag   map[string]*agent.Client
}

func upFleet(t *testing.T, prefix string, cfg testbed.Config) *fleetBed {
	t.Helper()
	tbtest.RequireRoot(t, "the testbed, runc and CRIU")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg.AgentBinary = self
	tb := tbtest.Up(t, prefix, cfg)
	tok, err := tb.Token()
	if err != nil {
		t.Fatal(err)
	}
	f := &fleetBed{tb: tb, self: self, ag: map[string]*agent.Client{},
		fc: fleet.Client{C: controller.NewClient("unix://"+tb.ControllerSocket(), controller.ClientOptions{Token: tok, Timeout: 30 * time.Second})}}
	for _, h := range tb.Hosts() {
		f.ag[h] = agent.NewClient("unix://"+tb.AgentSocket(h), agent.ClientOptions{Token: tok})
	}
	// Agents register as they start: wait until every one answers the
	// controller's own calls (over mutual TLS, as the controller).
	waitFor(t, "every host registered and reachable", func() bool {
		hs, err := f.fc.Hosts(context.Background())
		if err != nil || len(hs) != len(tb.Hosts()) {
			return false
		}
		for _, h := range hs {
			if !h.Reachable {
				return false
			}
		}
		return true
	})
	return f
}

// runStreams starts n stream servers on host with small requests and
// keeps a sequence-checked connection to each.
func (f *fleetBed) runStreams(t *testing.T, host string, first, n int) map[string]*stream.Conn {
	t.Helper()
	conns := map[string]*stream.Conn{}
	for i := range n {
		name := fmt.Sprintf("s%d", first+i)
		ip := netip.AddrFrom4([4]byte{198, 18, 0, byte(20 + first + i)})
		spec := agent.ContainerSpec{Name: name, IP: ip, Args: []string{"/opt/cflow/bin/" + baseName(f.self), "workload", "stream-server"}}
		spec.Resources.CPUs, spec.Resources.MemoryBytes = 0.1, 64<<20
		if _, err := f.ag[host].Run(context.Background(), spec); err != nil {
			t.Fatal(err)
		}
		conns[name] = dialStream(t, f.tb, ip)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Stop(context.Background(), time.Second)
		}
	})
	return conns
}

func checkStreams(t *testing.T, conns map[string]*stream.Conn) {
	t.Helper()
	for name, c := range conns {
		st := c.Stop(context.Background(), 5*time.Second)
		if st.Dropped || st.Unanswered() != 0 || st.Echo.Lost+st.Server.Lost+st.Echo.Duplicated+st.Server.Duplicated != 0 {
			t.Errorf("stream of %s damaged: %+v", name, st)
		}
	}
}

// where lists the hosts each container runs on.
func (f *fleetBed) where(t *testing.T) map[string]string {
	t.Helper()
	at := map[string]string{}
	for h, c := range f.ag {
		l, err := c.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, ci := range l {
			if ci.State == agent.StateRunning {
				at[ci.Name] = h
			}
		}
	}
	return at
}

// evacuatingOneAtATime runs n stream containers on hostA and starts its
// evacuation, one at a time; it returns once the first step ended.
func (f *fleetBed) evacuatingOneAtATime(t *testing.T, n int) (fleet.Operation, map[string]*stream.Conn) {
	t.Helper()
	ctx := context.Background()
	conns := f.runStreams(t, testbed.HostA, 0, n)
	time.Sleep(200 * time.Millisecond)
	op, err := f.fc.Evacuate(ctx, testbed.HostA, 1)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first step to end", func() bool {
		o, err := f.fc.Operation(ctx, op.ID, 0)
		return err == nil && o.Done >= 1
	})
	return op, conns
}

func wantAPIError(t *testing.T, what string, err error, status int) {
	t.Helper()
	var e *controller.APIError
	if !errors.As(err, &e) || e.Status != status {
		t.Fatalf("%s: got %v, want HTTP %d", what, err, status)
	}
	t.Logf("%s: refused as expected: %v", what, err)
}

// Evacuate a host with live connections, with the faults around it: the
// only schedulable host, an unknown host, a finished operation cancelled;
// then rebalance back with the fewest moves.
func TestEvacuateAndRebalance(t *testing.T) {
	f := upFleet(t, "fl", testbed.Config{})
	A, B := testbed.HostA, testbed.HostB
	ctx := context.Background()
	conns := f.runStreams(t, A, 0, 3)
	time.Sleep(200 * time.Millisecond)

	op, err := f.fc.Evacuate(ctx, A, 2)
	if err != nil {
		t.Fatal(err)
	}
	if op.Total != 3 || op.Concurrency != 2 {
		t.Fatalf("evacuation operation %+v: want 3 steps, 2 at once", op)
	}
	// Two evacuations of one host: refused while the first runs (or, if it
	// already ended, a second one with nothing to move).
	if _, err := f.fc.Evacuate(ctx, A, 2); err == nil {
		if op2, _ := f.fc.Operation(ctx, op.ID, 0); !op2.Finished() {
			t.Fatal("a second evacuation of hostA was accepted while the first ran")
		}
	} else {
		wantAPIError(t, "a second evacuation of hostA", err, 409)
	}
	op, err = f.fc.Operation(ctx, op.ID, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if op.Status != fleet.StatusSuccess || op.Done != 3 {
		t.Fatalf("evacuation: %+v", op)
	}
	for _, s := range op.Steps {
		t.Logf("step %s %s->%s %s downtime %.1f ms", s.Container, s.From, s.To, s.Status, s.DowntimeMs)
		if s.To != B || s.Status != fleet.StatusSuccess || s.DowntimeMs <= 0 {
			t.Errorf("step %+v", s)
		}
	}
	for name, h := range f.where(t) {
		if h != B {
			t.Errorf("%s on %s after the evacuation of hostA", name, h)
		}
	}
	hs, err := f.fc.Hosts(ctx)
	if err != nil || !hs[0].Unschedulable || hs[0].Name != A {
		t.Fatalf("hostA after its evacuation: %+v %v", hs, err)
	}

	// Bad input: nothing changes.
	_, err = f.fc.Evacuate(ctx, B, 1)
	wantAPIError(t, "evacuate the only schedulable host", err, 409)
	_, err = f.fc.Evacuate(ctx, "hostZ", 1)
	wantAPIError(t, "evacuate an unknown host", err, 404)
	_, err = f.fc.Cancel(ctx, op.ID)
	wantAPIError(t, "cancel a finished operation", err, 409)
	_, err = f.fc.Migrate(ctx, "s0", A)
	wantAPIError(t, "migrate onto an unschedulable host", err, 409)
	if h, err := f.fc.Place(ctx, fleet.PlacementRequest{Name: "new", CPUs: 0.1}); err != nil || h != B {
		t.Fatalf("placement with hostA unschedulable: %q %v", h, err)
	}

	// Back in service: three equal containers on two hosts are best 2:1
	// (max/mean 1.33, over the 1.1 target, which no plan reaches): one move.
	if _, err := f.fc.SetSchedulable(ctx, A, true); err != nil {
		t.Fatal(err)
	}
	a, err := f.fc.Rebalance(ctx, fleet.RebalanceRequest{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if a.Operation != nil || len(a.Plan.Steps) != 1 || a.Plan.Steps[0].To != A {
		t.Fatalf("rebalance dry run: %+v", a)
	}
	if at := f.where(t); at["s0"] != B || at["s1"] != B || at["s2"] != B {
		t.Fatalf("a dry run moved something: %v", at)
	}
	a, err = f.fc.Rebalance(ctx, fleet.RebalanceRequest{})
	if err != nil || a.Operation == nil {
		t.Fatalf("rebalance: %+v %v", a, err)
	}
	rop, err := f.fc.Operation(ctx, a.Operation.ID, time.Minute)
	if err != nil || rop.Status != fleet.StatusSuccess || rop.Total != 1 {
		t.Fatalf("rebalance operation: %+v %v", rop, err)
	}
	n := map[string]int{}
	for _, h := range f.where(t) {
		n[h]++
	}
	if n[A] != 1 || n[B] != 2 {
		t.Fatalf("after the rebalance: %v", n)
	}
	checkStreams(t, conns)
}

// The controller killed during an evacuation: every container still runs
// somewhere with its connection, and the restarted controller ends the
// operation as failed, saying for each step what became of it.
func TestControllerRestartDuringEvacuation(t *testing.T) {
	f := upFleet(t, "fr", testbed.Config{Hosts: 3})
	ctx := context.Background()
	op, conns := f.evacuatingOneAtATime(t, 4)
	switchNs, _ := f.tb.Netns(testbed.Switch)
	pids, _ := nsrun.Pids(switchNs)
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	waitFor(t, "controller gone", func() bool { _, err := f.fc.Hosts(ctx); return err != nil })
	if err := f.tb.StartController(f.self); err != nil {
		t.Fatal(err)
	}
	got, err := f.fc.Operation(ctx, op.ID, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after the restart: %s: %s", got.Status, got.Error)
	if got.Status != fleet.StatusFailure || !got.Finished() || !strings.Contains(got.Error, "restarted") {
		t.Fatalf("operation after a controller restart: %+v", got)
	}
	at := f.where(t)
	for _, s := range got.Steps {
		t.Logf("step %s: %s %s", s.Container, s.Status, s.Error)
		switch s.Status {
		case fleet.StatusSuccess:
			if at[s.Container] != s.To {
				t.Errorf("step %s says moved to %s, it runs on %q", s.Container, s.To, at[s.Container])
			}
		case fleet.StatusCancelled:
			if at[s.Container] != testbed.HostA {
				t.Errorf("step %s was not started, yet %s runs on %q", s.Container, s.Container, at[s.Container])
			}
		case fleet.StatusFailure:
			if !strings.Contains(s.Error, at[s.Container]) {
				t.Errorf("step %s: %q does not say where it runs (%s)", s.Container, s.Error, at[s.Container])
			}
		default:
			t.Errorf("step %s left %s", s.Container, s.Status)
		}
	}
	if len(at) != 4 {
		t.Fatalf("containers running: %v", at)
	}
	// The fleet goes on: the rest of hostA can be evacuated.
	op2, err := f.fc.Evacuate(ctx, testbed.HostA, 2)
	if err != nil {
		t.Fatal(err)
	}
	if op2, err = f.fc.Operation(ctx, op2.ID, time.Minute); err != nil || op2.Status != fleet.StatusSuccess {
		t.Fatalf("second evacuation: %+v %v", op2, err)
	}
	for name, h := range f.where(t) {
		if h == testbed.HostA {
			t.Errorf("%s still on hostA", name)
		}
	}
	checkStreams(t, conns)
}

// Cancelled mid-evacuation: the steps not started are not run, the one
// under way rolls back or completes, every container runs with its
// connection, and the operation says which.
func TestCancelEvacuation(t *testing.T) {
	f := upFleet(t, "fc", testbed.Config{Hosts: 3})
	ctx := context.Background()
	op, conns := f.evacuatingOneAtATime(t, 4)
	if _, err := f.fc.Cancel(ctx, op.ID); err != nil {
		t.Fatal(err)
	}
	got, err := f.fc.Operation(ctx, op.ID, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %s", got.Status, got.Error)
	if got.Status != fleet.StatusCancelled {
		t.Fatalf("cancelled operation: %+v", got)
	}
	at := f.where(t)
	cancelled := 0
	for _, s := range got.Steps {
		t.Logf("step %s: %s %s", s.Container, s.Status, s.Error)
		want := testbed.HostA
		if s.Status == fleet.StatusSuccess {
			want = s.To
		}
		if s.Status == fleet.StatusCancelled {
			cancelled++
		}
		if at[s.Container] != want {
			t.Errorf("step %s (%s): runs on %q, want %s", s.Container, s.Status, at[s.Container], want)
		}
	}
	if cancelled == 0 || len(at) != 4 {
		t.Fatalf("%d steps cancelled, containers %v", cancelled, at)
	}
	_, err = f.fc.Cancel(ctx, op.ID)
	wantAPIError(t, "cancel twice", err, 409)
	checkStreams(t, conns)
}

// A container too big for every other host stays, its step says why, and
// the rest of the host is emptied; the operation ends as failure.
func TestEvacuateWithAContainerTooBig(t *testing.T) {
	f := upFleet(t, "fb", testbed.Config{Hosts: 3, HostCapacity: testbed.Capacity{CPUs: 1, Memory: "1GiB"}})
	ctx := context.Background()
	bin := "/opt/cflow/bin/" + baseName(f.self)
	run := func(host, name string, ip byte, cpus float64) {
		spec := agent.ContainerSpec{Name: name, IP: netip.AddrFrom4([4]byte{198, 18, 0, ip}), Args: []string{bin, "workload", "stream-server"}}
		spec.Resources.CPUs = cpus
		if _, err := f.ag[host].Run(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	run(testbed.HostA, "big", 30, 0.8)
	run(testbed.HostA, "small", 31, 0.1)
	run(testbed.HostB, "b", 32, 0.5)
	run("hostC", "c", 33, 0.5)
	op, err := f.fc.Evacuate(ctx, testbed.HostA, 2)
	if err != nil {
		t.Fatal(err)
	}
	if op, err = f.fc.Operation(ctx, op.ID, time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %s", op.Status, op.Error)
	at := f.where(t)
	if op.Status != fleet.StatusFailure || at["big"] != testbed.HostA || at["small"] == testbed.HostA || at["small"] == "" {
		t.Fatalf("operation %+v, containers at %v", op, at)
	}
	for _, s := range op.Steps {
		if s.Container == "big" && (s.Status != fleet.StatusFailure || !strings.Contains(s.Error, "stays")) {
			t.Errorf("step of big: %+v", s)
		}
	}
}
