package e2e

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/agent"
	"github.com/containerflow/containerflow/internal/cli"
	"github.com/containerflow/containerflow/internal/migration"
	"github.com/containerflow/containerflow/internal/nsrun"
	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/testbed/tbtest"
	"github.com/containerflow/containerflow/internal/workload/stream"
)

// TestMain lets the testbed start this binary as the controller and the
// agents, and containers run it as their workload.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && (os.Args[1] == "agent" || os.Args[1] == "workload" || os.Args[1] == "switch") {
		os.Exit(cli.Execute())
	}
	os.Exit(m.Run())
}

// With the switch controller down, a migration cannot point the switch at
// the destination: it must roll back, and the stream must not notice more
// than the pause. With the controller back, the same migration succeeds.
func TestMigrationWithSwitchControllerDown(t *testing.T) {
	tbtest.RequireRoot(t, "the testbed, runc and CRIU")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tb := tbtest.Up(t, "e", testbed.Config{AgentBinary: self})
	if tb.Switch != testbed.SwitchEBPF {
		t.Fatalf("the testbed should default to the eBPF switch, got %s", tb.Switch)
	}
	tok, err := tb.Token()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a := agent.NewClient("unix://"+tb.AgentSocket(testbed.HostA), agent.ClientOptions{Token: tok})
	if _, err := a.Run(ctx, agent.ContainerSpec{Name: "s", IP: testbedIP,
		Args: []string{"/opt/cflow/bin/" + baseName(self), "workload", "stream-server"}}); err != nil {
		t.Fatal(err)
	}
	var conn *stream.Conn
	deadline := time.Now().Add(10 * time.Second)
	for conn == nil {
		c, err := tb.Dial(testbed.Client, "tcp4", testbedIP.String()+":9000", time.Second)
		if err == nil {
			conn = stream.Start(c, 5*time.Millisecond, 20*time.Millisecond)
		} else if time.Now().After(deadline) {
			t.Fatal(err)
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	time.Sleep(300 * time.Millisecond)

	switchNs, _ := tb.Netns(testbed.Switch)
	pids, err := nsrun.Pids(switchNs)
	if err != nil || len(pids) == 0 {
		t.Fatalf("controller processes: %v %v", pids, err)
	}
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	started := time.Now()
	res, err := a.Migrate(ctx, "s", agent.MigrateRequest{To: testbed.HostB})
	rolledBack := time.Now()
	if err == nil {
		t.Fatal("migration succeeded with the switch controller down")
	}
	if res == nil || res.Record.Status != migration.StatusRolledBack {
		t.Fatalf("want rolled_back, got %+v (%v)", res, err)
	}
	t.Logf("rolled back as expected after %.0f ms: %v", res.Record.TotalMs, err)
	// The clients' records sent during the freeze are handed back to the
	// resumed source, so both directions go on as it resumes — not at the
	// client's next backed-off retransmission (0.6 s, 1.4 s... after the
	// freeze, so typically 0.1-1 s after a rollback). The bounds are the
	// migration's own time plus a margin for a loaded machine, never the
	// client's timer.
	const margin = 300 * time.Millisecond
	before := conn.Stats()
	for {
		now := conn.Stats()
		if now.Echo.Next > before.Echo.Next && now.Server.Next > before.Server.Next {
			break
		}
		if now.Dropped || time.Since(rolledBack) > 5*time.Second {
			t.Fatalf("the stream did not resume after the rollback: before %+v now %+v", before, now)
		}
		time.Sleep(2 * time.Millisecond)
	}
	if took := time.Since(rolledBack); took > margin {
		t.Fatalf("the stream resumed %v after the rollback (at most %v)", took, margin)
	}
	time.Sleep(50 * time.Millisecond)
	limit := time.Duration(res.Record.TotalMs*float64(time.Millisecond)) + margin
	gap := conn.Stats().MaxGapIn(stream.KindEcho, started, time.Now())
	if gap > limit {
		t.Fatalf("the echoes paused %v across a rollback that took %.0f ms", gap, res.Record.TotalMs)
	}
	t.Logf("echoes paused %v across the rollback (freeze to resumed: %.0f ms)", gap, res.Record.TotalMs-res.Record.PrepareMs)

	// Forwarding went on without the controller; with it back (it adopts
	// the pinned tables), the migration goes through.
	if err := tb.StartController(self); err != nil {
		t.Fatal(err)
	}
	ok, err := a.Migrate(ctx, "s", agent.MigrateRequest{To: testbed.HostB})
	if err != nil {
		t.Fatalf("migration with the controller back: %v", err)
	}
	if ok.Record.SwitchedBy != "destination" {
		t.Errorf("the destination's go-live hook did not take the address: switched_by %q", ok.Record.SwitchedBy)
	}
	time.Sleep(500 * time.Millisecond)
	st := conn.Stop(ctx, 5*time.Second)
	if st.Dropped || st.Unanswered() != 0 || st.Echo.Lost+st.Server.Lost+st.Echo.Duplicated+st.Server.Duplicated != 0 {
		t.Fatalf("stream damaged: %+v", st)
	}
}
