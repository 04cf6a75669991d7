package agent

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/testprog"
)

func TestMigrateHostProgramBackAndForth(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ip := netip.MustParseAddr("198.18.0.2")
	e.runOn(testbed.HostA, ContainerSpec{Name: "py", IP: ip, Args: testprog.Args(testprog.Counter)})
	lc := newLineConn(t, e.dial("198.18.0.2:7000"))
	lc.say("a", "1:a")

	res, err := e.clients[testbed.HostA].Migrate(ctx, "py", MigrateRequest{To: testbed.HostB})
	if err != nil {
		t.Fatalf("migrate A->B: %v", err)
	}
	r := res.Record
	t.Logf("A->B: checkpoint %.1f ms, transfer %.1f ms, restore %.1f ms, switch %.1f ms, time to ready %.1f ms, total %.1f ms, %d bytes",
		r.CheckpointMs, r.TransferMs, r.RestoreMs, r.SwitchMs, r.TimeToReadyMs, r.TotalMs, r.CheckpointB)
	if r.SwitchedBy != "destination" {
		t.Errorf("the destination's go-live hook did not take the address (switched_by %q)", r.SwitchedBy)
	}
	if r.Status != "success" || r.CheckpointB == 0 || r.TimeToReadyMs <= 0 || r.SourceNode != testbed.HostA || r.TargetNode != testbed.HostB {
		t.Errorf("bad record: %+v", r)
	}
	lc.say("b", "2:b")
	if _, err := e.clients[testbed.HostA].Get(ctx, "py"); err == nil {
		t.Error("container still listed on hostA")
	}
	if info, err := e.clients[testbed.HostB].Get(ctx, "py"); err != nil || info.State != StateRunning {
		t.Errorf("hostB: %+v %v", info, err)
	}

	// Back with the stream compressed: the same container, less on the wire.
	back, err := e.clients[testbed.HostB].Migrate(ctx, "py", MigrateRequest{To: testbed.HostA, Compress: "zstd"})
	if err != nil {
		t.Fatalf("migrate B->A: %v", err)
	}
	lc.say("c", "3:c")
	if b := back.Record; b.Compress != "zstd" || b.TransferWireB <= 0 || b.TransferWireB >= b.CheckpointB {
		t.Errorf("zstd stream: compress %q, %d bytes on the wire for %d of images", b.Compress, b.TransferWireB, b.CheckpointB)
	}
	if r.Compress != "" || r.TransferWireB < r.CheckpointB {
		t.Errorf("plain stream: compress %q, %d bytes on the wire for %d of images", r.Compress, r.TransferWireB, r.CheckpointB)
	}
	t.Logf("images %d bytes: %d on the wire plain, %d with zstd", r.CheckpointB, r.TransferWireB, back.Record.TransferWireB)
	names, _ := e.tb.ContainerNets(testbed.HostB)
	if len(names) != 0 {
		t.Errorf("hostB still has container namespaces: %v", names)
	}
}

// A host program with two processes and several threads (testprog.Multi).
func TestMigrateMultiProcessThreadsUDPAndListener(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.runOn(testbed.HostA, ContainerSpec{Name: "multi", IP: netip.MustParseAddr("198.18.0.3"), Args: testprog.Args(testprog.Multi)})
	c1 := newLineConn(t, e.dial("198.18.0.3:7000"))
	c1.say("a", "1:a")
	c2 := newLineConn(t, e.dial("198.18.0.3:7000"))
	c2.say("b", "2:b")
	udp, err := e.tb.Dial(testbed.Client, "udp4", "198.18.0.3:7001", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	udpSay := func(msg, want string) {
		t.Helper()
		buf := make([]byte, 2048)
		// UDP has no retransmission: retry until the restored socket answers.
		for i := 0; i < 20; i++ {
			_, _ = udp.Write([]byte(msg))
			_ = udp.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, err := udp.Read(buf)
			if err == nil {
				if got := string(buf[:n]); !strings.HasSuffix(got, ":"+msg) {
					t.Fatalf("udp %q: got %q", msg, got)
				}
				if want != "" && string(buf[:n]) != want {
					t.Fatalf("udp %q: got %q want %q", msg, buf[:n], want)
				}
				return
			}
		}
		t.Fatalf("udp %q: no answer", msg)
	}
	udpSay("u1", "1:u1")

	for i, to := range []string{testbed.HostB, testbed.HostA} {
		from := testbed.HostA
		if to == testbed.HostA {
			from = testbed.HostB
		}
		if _, err := e.clients[from].Migrate(ctx, "multi", MigrateRequest{To: to}); err != nil {
			t.Fatalf("migration %d to %s: %v", i+1, to, err)
		}
		// Both established connections go on, with the shared counter.
		c1.say(fmt.Sprint("c1-", i), fmt.Sprintf("%d:c1-%d", 3+3*i, i))
		c2.say(fmt.Sprint("c2-", i), fmt.Sprintf("%d:c2-%d", 4+3*i, i))
		// The listening socket accepts a new connection right away.
		c3 := newLineConn(t, e.dial("198.18.0.3:7000"))
		c3.say(fmt.Sprint("c3-", i), fmt.Sprintf("%d:c3-%d", 5+3*i, i))
		c3.c.Close()
		// The forked child's UDP socket answers the same client socket,
		// and its own counter survived (possibly past datagrams retried).
		udpSay(fmt.Sprint("u-after-", i), "")

		pids, err := e.agents[to].rt.Pids(ctx, "multi")
		if err != nil || len(pids) < 2 {
			t.Fatalf("processes on %s after migration: %v %v", to, pids, err)
		}
		info, _ := e.clients[to].Get(ctx, "multi")
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", info.Pid))
		if len(tasks) < 3 { // main thread + a thread per live connection
			t.Fatalf("threads of the restored server: %d", len(tasks))
		}
	}
}

// After a move the container is an ordinary container of its new host,
// whichever engine moved it: listed, signalled, logged, adopted again by a
// restarted agent, migrated again and removed without leftovers. runc
// cannot checkpoint what the direct engine restored, and says so before
// touching it.
func TestMigratedContainerStaysManageable(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	prog := strings.Replace(testprog.Counter, "    n += 1\n", "    n += 1\n    print('line', n, flush=True)\n", 1)
	e.runOn(testbed.HostA, ContainerSpec{Name: "py", IP: netip.MustParseAddr("198.18.0.2"), Args: testprog.Args(prog)})
	lc := newLineConn(t, e.dial("198.18.0.2:7000"))
	lc.say("a", "1:a")

	// The baseline engine, then the direct one.
	if res, err := e.clients[testbed.HostA].Migrate(ctx, "py", MigrateRequest{To: testbed.HostB, Engine: EngineRunc}); err != nil || res.Record.Engine != EngineRunc {
		t.Fatalf("runc engine A->B: %+v %v", res, err)
	}
	lc.say("b", "2:b")
	if res, err := e.clients[testbed.HostB].Migrate(ctx, "py", MigrateRequest{To: testbed.HostA}); err != nil || res.Record.Engine != EngineDirect {
		t.Fatalf("direct engine B->A: %+v %v", res, err)
	}
	lc.say("c", "3:c")

	// The agent of its new host restarts and adopts it.
	e.stopAgent(testbed.HostA)
	e.startAgent(testbed.HostA)
	info, err := e.clients[testbed.HostA].Get(ctx, "py")
	if err != nil || info.State != StateRunning || info.Pid == 0 {
		t.Fatalf("after the agent restarted: %+v %v", info, err)
	}
	if err := e.clients[testbed.HostA].Signal(ctx, "py", 18); err != nil { // SIGCONT: harmless
		t.Errorf("signal: %v", err)
	}
	lc.say("d", "4:d")
	// The restarted agent shows the log written before it started: the
	// output after it went through the old agent's copier, which a real
	// restart loses with its process (docs/logs.md), so it is not asked.
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		logs, err := e.clients[testbed.HostA].Logs(ctx, "py")
		if err == nil && strings.Contains(string(logs), "line 3") {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("logs on hostA: %q %v", logs, err)
			break
		}
	}
	_, err = e.clients[testbed.HostA].Migrate(ctx, "py", MigrateRequest{To: testbed.HostB, Engine: EngineRunc})
	if err == nil || !strings.Contains(err.Error(), "direct engine") {
		t.Errorf("runc engine on a directly restored container: %v", err)
	}
	lc.say("e", "5:e")
	if _, err := e.clients[testbed.HostA].Migrate(ctx, "py", MigrateRequest{To: testbed.HostB}); err != nil {
		t.Fatalf("direct engine A->B after the restart: %v", err)
	}
	lc.say("f", "6:f")
	if err := e.clients[testbed.HostB].Remove(ctx, "py"); err != nil {
		t.Fatal(err)
	}
	for _, h := range testbed.Hosts {
		expectHostEmpty(t, e, h)
		if b := e.agents[h].rt.Bundles(); len(b) != 0 {
			t.Errorf("%s keeps bundles %v", h, b)
		}
	}
}
