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
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/criu"
	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/testbed/tbtest"
	"github.com/containerflow/containerflow/internal/testprog"
)

func setup(t *testing.T) (*testbed.Testbed, criu.Binary) {
	t.Helper()
	tbtest.RequireRoot(t, "runc and CRIU")
	b, _, err := criu.Find(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// As the agent does: without the cache CRIU probes the kernel for
	// ~60 ms at every start.
	if _, err := criu.EnsureKernelCache(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	return tbtest.Up(t, "r", testbed.Config{}), b
}

func newRuntime(t *testing.T, tb *testbed.Testbed, host string, criuPath criu.Binary) *Runtime {
	t.Helper()
	dir := filepath.Join(t.TempDir(), host)
	if d := os.Getenv("CFLOW_KEEP_LOGS"); d != "" {
		dir = filepath.Join(d, host)
		_ = os.RemoveAll(dir)
	}
	r, err := New(tb.Prefix+"-"+host, dir, criuPath)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCheckpointOnOneHostRestoreOnOther(t *testing.T) {
	tb, criuPath := setup(t)
	ctx := context.Background()
	ip := netip.MustParseAddr("198.18.0.2")
	ra := newRuntime(t, tb, testbed.HostA, criuPath)
	rb := newRuntime(t, tb, testbed.HostB, criuPath)

	na, err := tb.AddContainerNet(testbed.HostA, "echo", ip, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.Steer(ip, na.MAC, testbed.HostA); err != nil {
		t.Fatal(err)
	}
	spec := Spec{Name: "echo", Args: testprog.Args(testprog.Counter), Netns: na.NetnsPath()}
	if _, err := ra.Run(ctx, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ra.Delete(ctx, "echo"); _ = rb.Delete(ctx, "echo") })

	var c net.Conn
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err = tb.Dial(testbed.Client, "tcp4", ip.String()+":7000", time.Second)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("connect to container: %v\nlog: %s", err, readLog(t, ra, "echo"))
	}
	defer c.Close()
	rd := bufio.NewReader(c)
	say := func(msg, want string) {
		t.Helper()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "%s\n", msg)
		got, err := rd.ReadString('\n')
		if err != nil || got != want+"\n" {
			t.Fatalf("say %q: got %q, %v; want %q", msg, got, err, want)
		}
	}
	say("a", "1:a")
	say("b", "2:b")

	nb, err := tb.AddContainerNet(testbed.HostB, "echo", ip, na.MAC)
	if err != nil {
		t.Fatal(err)
	}
	specB := spec
	specB.Netns = nb.NetnsPath()
	if err := rb.PrepareBundle(specB); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	opts := CheckpointOpts{ImagesDir: filepath.Join(work, "images"), WorkDir: filepath.Join(work, "work")}
	t0 := time.Now()
	if err := ra.Freeze("echo", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	tf := time.Now()
	if err := ra.Checkpoint(ctx, "echo", opts); err != nil {
		t.Fatalf("%v\n%s", err, readFile(filepath.Join(opts.WorkDir, "dump.log")))
	}
	tc := time.Now()
	if _, err := rb.Restore(ctx, specB, opts); err != nil {
		t.Fatalf("%v\n%s", err, readFile(filepath.Join(opts.WorkDir, "restore.log")))
	}
	tr := time.Now()
	if err := tb.Steer(ip, na.MAC, testbed.HostB); err != nil {
		t.Fatal(err)
	}
	if err := tb.RemoveContainerNet(testbed.HostA, "echo"); err != nil {
		t.Fatal(err)
	}
	t.Logf("freeze %v, checkpoint %v, restore %v", tf.Sub(t0), tc.Sub(tf), tr.Sub(tc))
	if d := os.Getenv("CFLOW_KEEP_LOGS"); d != "" {
		_ = os.WriteFile(filepath.Join(d, "dump.log"), []byte(readFileAll(filepath.Join(opts.WorkDir, "dump.log"))), 0o644)
		_ = os.WriteFile(filepath.Join(d, "restore.log"), []byte(readFileAll(filepath.Join(opts.WorkDir, "restore.log"))), 0o644)
	}
	say("c", "3:c") // the counter survived: same process memory
	st, err := rb.State(ctx, "echo")
	if err != nil || st.Status != "running" {
		t.Fatalf("restored container state: %+v %v", st, err)
	}
	if _, err := ra.State(ctx, "echo"); err == nil {
		t.Error("source container still exists after checkpoint")
	}
}

func readFile(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return err.Error()
	}
	s := string(b)
	if lines := strings.Split(s, "\n"); len(lines) > 30 {
		s = strings.Join(lines[len(lines)-30:], "\n")
	}
	return s
}

func readFileAll(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}
