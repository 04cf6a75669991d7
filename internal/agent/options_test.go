package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/containerflow/containerflow/internal/criu"
	"github.com/containerflow/containerflow/internal/runtime"
	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/testprog"
)

// dropper binds a privileged port as root, then drops to nobody, as stock
// servers do; it writes a file into its working directory (a volume) and
// answers every line on every connection with "N:line", N counting lines
// across connections.
const dropper = `
import os, selectors, socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 80)); s.listen(4096)
os.setgroups([]); os.setgid(65534); os.setuid(65534)
with open("written-by-server", "w") as f:
    f.write("uid=%d\n" % os.getuid())
sel = selectors.DefaultSelector(); sel.register(s, selectors.EVENT_READ)
n = 0
while True:
    for key, _ in sel.select():
        if key.fileobj is s:
            c, _ = s.accept(); sel.register(c, selectors.EVENT_READ)
            continue
        c = key.fileobj
        data = c.recv(4096)
        if not data:
            sel.unregister(c); c.close(); continue
        n += 1
        c.sendall(b"%d:" % n + data)
`

// A server that drops privileges, with a volume, a working directory, a
// raised open-files limit, memory and CPU limits, and 5000 connections,
// migrates A -> B -> A with every connection and its limits.
func TestNonRootServerWithOptionsMigrates(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var own unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &own); err != nil {
		t.Fatal(err)
	}
	const conns = 5000
	if own.Max < conns+100 {
		t.Skipf("the open-files hard limit here is %d, below %d connections", own.Max, conns)
	}
	vol := t.TempDir()
	if err := os.Chmod(vol, 0o777); err != nil {
		t.Fatal(err)
	}
	ul, err := runtime.ParseUlimit(fmt.Sprintf("nofile=%d", own.Max))
	if err != nil {
		t.Fatal(err)
	}
	spec := ContainerSpec{Name: "drop", IP: netip.MustParseAddr("198.18.0.9"), Args: testprog.Args(dropper),
		Cwd: "/data", Rlimits: []runtime.Rlimit{ul}, Volumes: []runtime.Volume{{Source: vol, Target: "/data"}},
		Resources: runtime.Resources{MemoryBytes: 256 << 20, CPUs: 1.5}}
	e.runOn(testbed.HostA, spec)
	first := newLineConn(t, e.dial("198.18.0.9:80"))
	first.say("a", "1:a")
	if b, err := os.ReadFile(filepath.Join(vol, "written-by-server")); err != nil || string(b) != "uid=65534\n" {
		t.Fatalf("file the server wrote into its volume: %q %v", b, err)
	}
	cs := make([]net.Conn, 0, conns)
	t.Cleanup(func() {
		for _, c := range cs {
			c.Close()
		}
	})
	for range conns {
		c, err := e.tb.Dial(testbed.Client, "tcp4", "198.18.0.9:80", 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", len(cs)+1, err)
		}
		cs = append(cs, c)
	}
	n := 1
	for i, to := range []string{testbed.HostB, testbed.HostA} {
		from := testbed.HostA
		if i == 1 {
			from = testbed.HostB
		}
		res, err := e.clients[from].Migrate(ctx, "drop", MigrateRequest{To: to})
		if err != nil {
			t.Fatalf("migrate %s->%s: %v", from, to, err)
		}
		t.Logf("%s->%s with %d connections: downtime-side time to ready %.0f ms, checkpoint %.0f ms, restore %.0f ms, %d bytes",
			from, to, conns+1, res.Record.TimeToReadyMs, res.Record.CheckpointMs, res.Record.RestoreMs, res.Record.CheckpointB)
		n++
		first.say("b", fmt.Sprintf("%d:b", n))
		n += pingAll(t, cs)
		info, err := e.clients[to].Get(ctx, "drop")
		if err != nil {
			t.Fatal(err)
		}
		checkProcess(t, info.Pid, 65534, own.Max)
		checkCgroupLimits(t, info.Pid, 256<<20, 150000)
	}
}

// pingAll sends a line on every connection at once and checks each
// answer; it returns how many lines the server counted.
func pingAll(t *testing.T, cs []net.Conn) int {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(cs))
	sem := make(chan struct{}, 200)
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			if _, err := fmt.Fprintf(c, "c%d\n", i); err != nil {
				errs <- fmt.Errorf("connection %d: send: %w", i, err)
				return
			}
			got, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || !strings.HasSuffix(got, fmt.Sprintf(":c%d\n", i)) {
				errs <- fmt.Errorf("connection %d: got %q, %v", i, got, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	if len(all) > 0 {
		t.Fatalf("%d of %d connections failed after the migration, first: %v", len(all), len(cs), errors.Join(all[:min(3, len(all))]...))
	}
	return len(cs)
}

// checkProcess reads the restored process's uid and open-files limit from
// /proc, as the kernel sees them.
func checkProcess(t *testing.T, pid int, uid int, nofile uint64) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("Uid:\t%d\t%d\t%d\t%d", uid, uid, uid, uid)
	if !strings.Contains(string(status), want) {
		t.Errorf("pid %d is not uid %d: %s", pid, uid, grepLine(string(status), "Uid:"))
	}
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	if l := grepLine(string(limits), "Max open files"); !strings.Contains(l, fmt.Sprintf(" %d ", nofile)) {
		t.Errorf("pid %d: %q, want %d", pid, l, nofile)
	}
}

// checkCgroupLimits reads the memory and CPU limits of pid's cgroups.
func checkCgroupLimits(t *testing.T, pid int, mem int64, quota int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			got[c] = parts[2]
		}
	}
	read := func(hier, file string) string {
		v, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", hier, got[hier], file))
		if err != nil {
			t.Errorf("%s: %v", file, err)
		}
		return strings.TrimSpace(string(v))
	}
	if v := read("memory", "memory.limit_in_bytes"); v != fmt.Sprint(mem) {
		t.Errorf("memory limit %s, want %d", v, mem)
	}
	if v := read("cpu", "cpu.cfs_quota_us"); v != fmt.Sprint(quota) {
		t.Errorf("cpu quota %s, want %d", v, quota)
	}
}

func grepLine(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// Options that cannot work are refused before anything is made, and a
// volume missing on the destination fails the migration before the
// freeze, leaving the container where it was.
func TestBadOptions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var own unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &own); err != nil {
		t.Fatal(err)
	}
	base := ContainerSpec{Name: "bad", IP: netip.MustParseAddr("198.18.0.10"), Args: testprog.Args(testprog.Counter)}
	for _, c := range []struct {
		name string
		mod  func(*ContainerSpec)
		want string
	}{
		{"missing volume", func(s *ContainerSpec) {
			s.Volumes = []runtime.Volume{{Source: "/nonexistent/cflow-volume", Target: "/data"}}
		}, "volume source /nonexistent/cflow-volume"},
		{"relative workdir", func(s *ContainerSpec) { s.Cwd = "data" }, "absolute path"},
		{"volume over /proc", func(s *ContainerSpec) {
			s.Volumes = []runtime.Volume{{Source: "/tmp", Target: "/proc/x"}}
		}, "reserved"},
		{"soft above hard", func(s *ContainerSpec) {
			s.Rlimits = []runtime.Rlimit{{Type: "RLIMIT_NOFILE", Soft: 10, Hard: 5}}
		}, "above hard limit"},
		{"tiny memory", func(s *ContainerSpec) { s.Resources.MemoryBytes = 1024 }, "at least 6 MiB"},
		{"unknown image", func(s *ContainerSpec) { s.Image = "cflow.test/none:1" }, `image "cflow.test/none:1"`},
		{"image digest not here", func(s *ContainerSpec) { s.ImageDigest = "sha256:" + strings.Repeat("ab", 32) }, "is not on hostA"},
	} {
		s := base
		c.mod(&s)
		_, err := e.clients[testbed.HostA].Run(ctx, s)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error saying %q", c.name, err, c.want)
		}
	}
	if ok, _ := criu.HasSysResource(); !ok && own.Max != unix.RLIM_INFINITY {
		s := base
		s.Rlimits = []runtime.Rlimit{{Type: "RLIMIT_NOFILE", Soft: own.Max + 1, Hard: own.Max + 1}}
		if _, err := e.clients[testbed.HostA].Run(ctx, s); err == nil || !strings.Contains(err.Error(), "CAP_SYS_RESOURCE") {
			t.Errorf("nofile above the host's hard limit: got %v", err)
		}
	}
	if names, _ := e.tb.ContainerNets(testbed.HostA); len(names) != 0 {
		t.Errorf("refused runs left namespaces: %v", names)
	}

	// The volume's source disappears after the start: the destination's
	// check refuses the migration, the container stays with its connection.
	vol := filepath.Join(t.TempDir(), "vol")
	if err := os.Mkdir(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	s := base
	s.Volumes = []runtime.Volume{{Source: vol, Target: "/data"}}
	e.runOn(testbed.HostA, s)
	lc := newLineConn(t, e.dial("198.18.0.10:7000"))
	lc.say("a", "1:a")
	if err := os.Remove(vol); err != nil {
		t.Fatal(err)
	}
	res, err := e.clients[testbed.HostA].Migrate(ctx, "bad", MigrateRequest{To: testbed.HostB})
	if err == nil || !strings.Contains(err.Error(), "volume source "+vol) {
		t.Fatalf("migration with the volume missing on the destination: %+v %v", res, err)
	}
	if res != nil && res.Record.FreezeMs > 0 {
		t.Errorf("the container was frozen before the destination refused: %+v", res.Record)
	}
	lc.say("b", "2:b")
	if info, err := e.clients[testbed.HostA].Get(ctx, "bad"); err != nil || info.State != StateRunning {
		t.Errorf("after the refused migration: %+v %v", info, err)
	}
}
