package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/agent"
	"github.com/containerflow/containerflow/internal/migration"
	"github.com/containerflow/containerflow/internal/nsrun"
	"github.com/containerflow/containerflow/internal/pki"
	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/testbed/tbtest"
	"github.com/containerflow/containerflow/internal/workload/stream"
)

// A testbed of four hosts, as `cflow testbed up --hosts 4` builds it: an
// agent per host with its own certificate and every other agent as a
// peer, a switch port per host known to the controller by the host's name.
// A container holding a live stream to the client moves hostA -> hostC ->
// hostD through the agents (mutual TLS between them, steering through the
// controller; hostC's agent restarted in between), and the stream answers
// after every move without losing a record. Down then leaves no namespace, process or state behind.
func TestFourHostsMigration(t *testing.T) {
	tbtest.RequireRoot(t, "the testbed, runc and CRIU")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tb := tbtest.Up(t, "h", testbed.Config{AgentBinary: self, Hosts: 4})
	prefix := tb.Prefix
	A, C, D := testbed.HostA, "hostC", "hostD"
	want := []string{testbed.HostA, testbed.HostB, C, D}
	if got := tb.Hosts(); !slices.Equal(got, want) {
		t.Fatalf("hosts %v, want %v", got, want)
	}
	// Later commands learn the hosts from the testbed's state.
	opened, err := testbed.Open(prefix)
	if err != nil {
		t.Fatal(err)
	}
	if got := opened.Hosts(); !slices.Equal(got, want) {
		t.Fatalf("hosts of the opened testbed %v, want %v", got, want)
	}

	st, err := opened.Status()
	if err != nil {
		t.Fatal(err)
	}
	if !st.Healthy() {
		t.Fatalf("status not healthy: %+v", st.Switch.Problems)
	}
	listed := map[string]bool{}
	for _, n := range st.Nodes {
		listed[n.Node] = n.Present && n.Processes > 0
	}
	for _, h := range want {
		if !listed[h] {
			t.Errorf("status: host %s missing or without its agent (%v)", h, listed)
		}
	}
	ctx := context.Background()
	ports, err := tb.ControllerClient().Ports(ctx)
	if err != nil {
		t.Fatal(err)
	}
	named := map[string]uint32{}
	for _, p := range ports {
		named[p.Name] = p.Number
	}
	for _, n := range tb.Nodes() {
		if named[n.Name] != n.Port {
			t.Errorf("controller: port of %s is %d, want %d (ports %v)", n.Name, named[n.Name], n.Port, named)
		}
	}

	tok, err := tb.Token()
	if err != nil {
		t.Fatal(err)
	}
	ag := map[string]*agent.Client{}
	for _, h := range want {
		ag[h] = agent.NewClient("unix://"+tb.AgentSocket(h), agent.ClientOptions{Token: tok})
	}
	if _, err := ag[A].Run(ctx, agent.ContainerSpec{Name: "s", IP: testbedIP,
		Args: []string{"/opt/cflow/bin/" + baseName(self), "workload", "stream-server"}}); err != nil {
		t.Fatal(err)
	}
	conn := dialStream(t, tb, testbedIP)
	defer conn.Stop(ctx, time.Second)
	waitAnswers(t, conn)

	for _, hop := range [][2]string{{A, C}, {C, D}} {
		from, to := hop[0], hop[1]
		res, err := ag[from].Migrate(ctx, "s", agent.MigrateRequest{To: to})
		if err != nil {
			t.Fatalf("migrate %s -> %s: %v", from, to, err)
		}
		if res.Record.Status != migration.StatusSuccess {
			t.Fatalf("migrate %s -> %s: %s", from, to, res.Record.Status)
		}
		if info, err := ag[to].Get(ctx, "s"); err != nil || info.Host != to || info.State != agent.StateRunning {
			t.Fatalf("after %s -> %s, %s has %+v (%v)", from, to, to, info, err)
		}
		if _, err := ag[from].Get(ctx, "s"); err == nil {
			t.Errorf("after %s -> %s the source still lists the container", from, to)
		}
		waitAnswers(t, conn)
		t.Logf("%s -> %s: total %.0f ms, the stream answers", from, to, res.Record.TotalMs)
		if to == C {
			// A restarted agent of an added host gets its peers and
			// certificate again, and adopts the container.
			if err := tb.KillAgent(C); err != nil {
				t.Fatal(err)
			}
			if err := opened.StartAgent(self, C); err != nil {
				t.Fatal(err)
			}
			if info, err := ag[C].Get(ctx, "s"); err != nil || info.State != agent.StateRunning {
				t.Fatalf("after its agent's restart, hostC has %+v (%v)", info, err)
			}
		}
	}
	if err := tb.StartAgent(self, "hostE"); !errors.Is(err, testbed.ErrUnknownNode) {
		t.Errorf("agent on hostE of a four-host testbed: %v", err)
	}

	// hostD's certificate holds for its management address: the CLI's
	// identity reaches its agent over mutual TLS, as `cflow --tls` does.
	id, err := tb.Identity(pki.CLI)
	if err != nil {
		t.Fatal(err)
	}
	switchNs, _ := tb.Netns(testbed.Switch)
	overTLS := agent.NewClient(testbed.AgentTLSURL(D), agent.ClientOptions{Token: tok, Netns: switchNs, TLS: id.ClientConfig(D)})
	if info, err := overTLS.Get(ctx, "s"); err != nil || info.Host != D {
		t.Errorf("hostD over TLS: %+v, %v", info, err)
	}

	final := conn.Stop(ctx, 5*time.Second)
	if final.Dropped || final.Unanswered() != 0 || final.Echo.Lost+final.Server.Lost+final.Echo.Duplicated+final.Server.Duplicated != 0 {
		t.Fatalf("stream damaged: %+v", final)
	}

	var pids []int
	for _, h := range want {
		pids = append(pids, tb.AgentPID(h))
	}
	pids = append(pids, tb.ControllerPID())
	if info, err := ag[D].Get(ctx, "s"); err == nil {
		pids = append(pids, info.Pid)
	}
	if slices.Contains(pids, 0) {
		t.Fatalf("a daemon or the container has no pid: %v", pids)
	}
	if err := testbed.Down(prefix); err != nil {
		t.Fatal(err)
	}
	checkDownLeftNothing(t, prefix, pids)
}

// waitAnswers waits until the stream has had new echoes and server
// records since the call, failing if it broke or stalled.
func waitAnswers(t *testing.T, conn *stream.Conn) {
	t.Helper()
	before := conn.Stats()
	deadline := time.Now().Add(5 * time.Second)
	for {
		now := conn.Stats()
		if now.Dropped {
			t.Fatalf("the stream broke: %s", now.Err)
		}
		if now.Echo.Next > before.Echo.Next && now.Server.Next > before.Server.Next {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stream stalled: before %+v now %+v", before, now)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkDownLeftNothing: no namespace with the prefix, none of the pids
// alive, no process naming the prefix, no state directory, switch pins or
// cgroups.
func checkDownLeftNothing(t *testing.T, prefix string, pids []int) {
	t.Helper()
	if left, err := nsrun.List(prefix + "-"); err != nil || len(left) > 0 {
		t.Errorf("namespaces left: %v (%v)", left, err)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("process %d survived down", pid)
		}
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err == nil && mentions(e.Name(), "/"+prefix) {
			if pid, _ := strconv.Atoi(e.Name()); alive(pid) {
				t.Errorf("process %s still names %s", e.Name(), prefix)
			}
		}
	}
	for _, p := range []string{filepath.Join(testbed.RunDir, prefix), filepath.Join("/sys/fs/bpf/containerflow", "testbed-"+prefix)} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind (%v)", p, err)
		}
	}
	if cg, _ := filepath.Glob("/sys/fs/cgroup/*/containerflow/" + prefix + "-*"); len(cg) > 0 {
		t.Errorf("cgroups left: %v", cg)
	}
}

// alive reports whether pid runs (a zombie does not: it only waits for
// whoever inherited it to reap it).
func alive(pid int) bool {
	deadline := time.Now().Add(2 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if err != nil || zombie(b) {
			return false
		}
		if time.Now().After(deadline) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func zombie(stat []byte) bool {
	for i := len(stat) - 1; i >= 0; i-- {
		if stat[i] == ')' {
			return i+2 < len(stat) && stat[i+2] == 'Z'
		}
	}
	return false
}
