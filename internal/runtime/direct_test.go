package runtime

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/mounts"
	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/testprog"
)

// A container created by runc moves A -> B -> A with the direct engine:
// its memory, its TCP connection and its log follow it, and on each host
// it stays a container the runtime manages (state, signals, pids, delete)
// though runc never saw the restored copies.
func TestDirectEngineThereAndBack(t *testing.T) {
	tb, cb := setup(t)
	ctx := context.Background()
	ip := netip.MustParseAddr("198.18.0.2")
	rts := map[string]*Runtime{
		testbed.HostA: newRuntime(t, tb, testbed.HostA, cb),
		testbed.HostB: newRuntime(t, tb, testbed.HostB, cb),
	}
	// The counter also writes each line to stdout: the log must follow.
	prog := strings.Replace(testprog.Counter, "    n += 1\n", "    n += 1\n    print('got', n, flush=True)\n", 1)
	na, err := tb.AddContainerNet(testbed.HostA, "ctr", ip, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.Steer(ip, na.MAC, testbed.HostA); err != nil {
		t.Fatal(err)
	}
	spec := Spec{Name: "ctr", Args: testprog.Args(prog), Netns: na.NetnsPath()}
	if _, err := rts[testbed.HostA].Run(ctx, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, r := range rts {
			_ = r.Delete(ctx, "ctr")
		}
	})
	c := dialRetry(t, tb, ip.String()+":7000")
	defer c.Close()
	rd := bufio.NewReader(c)
	n := 0
	say := func() {
		t.Helper()
		n++
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "x\n")
		got, err := rd.ReadString('\n')
		if want := fmt.Sprintf("%d:x\n", n); err != nil || got != want {
			t.Fatalf("line %d: got %q, %v; want %q", n, got, err, want)
		}
	}
	say()

	from, netns := testbed.HostA, na
	for i, to := range []string{testbed.HostB, testbed.HostA} {
		src, dst := rts[from], rts[to]
		nd, err := tb.AddContainerNet(to, "ctr", ip, na.MAC)
		if err != nil {
			t.Fatal(err)
		}
		dspec := spec
		dspec.Netns = nd.NetnsPath()
		work := t.TempDir()
		o := DirectOpts{ImagesDir: filepath.Join(work, "images"), WorkDir: filepath.Join(work, "work"), LogLevel: 4}
		// Everything that does not need the container frozen, first.
		rs, err := dst.PrepareRestore(dspec, o)
		if err != nil {
			t.Fatal(err)
		}
		d, err := src.PrepareDump(ctx, "ctr", o)
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		if err := src.Freeze("ctr", 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := d.Dump(ctx); err != nil {
			if k := os.Getenv("CFLOW_KEEP_LOGS"); k != "" {
				_ = os.WriteFile(filepath.Join(k, "failed-dump.log"), []byte(readFileAll(filepath.Join(o.WorkDir, "dump.log"))), 0o644)
			}
			t.Fatalf("%v\n%s", err, readFile(filepath.Join(o.WorkDir, "dump.log")))
		}
		t1 := time.Now()
		steered := false
		res, err := rs.Restore(ctx, func() error {
			steered = true
			return tb.Steer(ip, na.MAC, to)
		})
		if err != nil {
			t.Fatalf("%v\n%s", err, readFile(filepath.Join(o.WorkDir, "restore.log")))
		}
		pid := res.Pid
		t.Logf("migration %d %s->%s: dump %v, restore %v", i+1, from, to, t1.Sub(t0), time.Since(t1))
		if k := os.Getenv("CFLOW_KEEP_LOGS"); k != "" {
			for _, f := range []string{"dump.log", "restore.log"} {
				_ = os.WriteFile(filepath.Join(k, fmt.Sprintf("direct-%d-%s", i+1, f)), []byte(readFileAll(filepath.Join(o.WorkDir, f))), 0o644)
			}
		}
		if !steered {
			t.Error("the pre-resume callback did not run")
		}
		if err := tb.RemoveContainerNet(from, "ctr"); err != nil {
			t.Fatal(err)
		}
		say() // memory and connection survived
		st, err := dst.State(ctx, "ctr")
		if err != nil || st.Status != "running" || st.Pid != pid {
			t.Fatalf("restored state on %s: %+v %v (pid %d)", to, st, err, pid)
		}
		if pids, err := dst.Pids(ctx, "ctr"); err != nil || len(pids) != 1 || pids[0] != pid {
			t.Errorf("pids on %s: %v %v, want [%d]", to, pids, err, pid)
		}
		if err := dst.Signal(ctx, "ctr", 0); err != nil {
			t.Errorf("signal 0 on %s: %v", to, err)
		}
		if st, err := src.State(ctx, "ctr"); err == nil && (st.Status == "running" || st.Status == "paused") {
			t.Errorf("source %s still runs the container: %+v", from, st)
		}
		if err := src.Delete(ctx, "ctr"); err != nil {
			t.Errorf("delete on the source %s: %v", from, err)
		}
		if got := readLog(t, dst, "ctr"); !strings.Contains(got, fmt.Sprintf("got %d", n)) {
			t.Errorf("log on %s lacks line %d: %q", to, n, got)
		}
		if ms, _ := mounts.Under(src.BundleDir("ctr")); len(ms) > 0 {
			t.Errorf("mounts left on %s: %v", from, ms)
		}
		from, netns = to, nd
	}
	_ = netns

	// A listed, signalled and deleted container: SIGTERM ends it.
	r := rts[from]
	cs, err := r.List(ctx)
	if err != nil || len(cs) != 1 || cs[0].Name != "ctr" || cs[0].Status != "running" {
		t.Fatalf("list: %+v %v", cs, err)
	}
	if err := r.Signal(ctx, "ctr", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := r.State(ctx, "ctr")
		if err == nil && st.Status == "stopped" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %+v %v after SIGKILL", st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := r.Delete(ctx, "ctr"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(r.BundleDir("ctr")); !os.IsNotExist(err) {
		t.Errorf("bundle left after delete: %v", err)
	}
	if cgs, _ := filepath.Glob(filepath.Join(cgroupRoot, "*", r.cgroupsPath("ctr"))); len(cgs) > 0 {
		t.Errorf("cgroups left after delete: %v", cgs)
	}
}

func dialRetry(t *testing.T, tb *testbed.Testbed, addr string) net.Conn {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := tb.Dial(testbed.Client, "tcp4", addr, time.Second)
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("connect to %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
