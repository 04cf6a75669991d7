package e2e

import (
	"bufio"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/agent"
	"github.com/containerflow/containerflow/internal/image/imagetest"
	"github.com/containerflow/containerflow/internal/nsrun"
	"github.com/containerflow/containerflow/internal/privfs"
	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/testbed/tbtest"
	"github.com/containerflow/containerflow/internal/workload/stream"
)

// Agents that share no filesystem, as on two real hosts: each in a mount
// namespace of its own with private /tmp, /var/tmp, /dev/shm, /run/netns
// and state directory. A plain container and one from an image (which
// only hostA has) migrate A -> B -> A with their streams intact, so no
// step of a migration reads a path the other host wrote; and what one
// agent writes in its view is seen neither by the other nor by the
// machine. After teardown nothing of the views survives anywhere.
func TestPrivateFSMigration(t *testing.T) {
	tbtest.RequireRoot(t, "the testbed, mount namespaces, runc and CRIU")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	static := imagetest.StaticCflow(t)
	archive := imagetest.BuildBusybox(t, t.TempDir(), map[string]string{"/opt/app/cflow": static})

	// Registered before tbtest.Up, so it runs after the testbed's teardown.
	var (
		prefix string
		views  = map[string]bool{} // the agents' mount namespaces
		nets   = map[string]bool{} // the containers' network namespaces
	)
	t.Cleanup(func() {
		if prefix != "" {
			checkNothingLeft(t, prefix, views, nets)
		}
	})
	machineMounts := mountsAt(t, "self", privfs.Covered...)
	tb := tbtest.Up(t, "p", testbed.Config{AgentBinary: self, PrivateFS: true})
	prefix = tb.Prefix
	tok, err := tb.Token()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ag := map[string]*agent.Client{}
	pid := map[string]int{}
	for _, h := range testbed.Hosts {
		ag[h] = agent.NewClient("unix://"+tb.AgentSocket(h), agent.ClientOptions{Token: tok})
		pid[h] = agentPid(t, tb, h)
		ns, err := privfs.MountNS(strconv.Itoa(pid[h]))
		if err != nil {
			t.Fatal(err)
		}
		views[ns] = true
	}
	A, B := testbed.HostA, testbed.HostB
	own, _ := privfs.MountNS("self")
	if len(views) != 2 || views[own] {
		t.Fatalf("agents' mount namespaces %v, the test's %s: want two of their own", views, own)
	}
	if now := mountsAt(t, "self", privfs.Covered...); now != machineMounts {
		t.Errorf("the machine's mounts on %v changed with the agents up:\n%s\nwas:\n%s", privfs.Covered, now, machineMounts)
	}

	// A probe written into hostA's view, under each private directory.
	dirs := append(append([]string{}, privfs.Covered...), tb.AgentStateDir(A))
	name := "cflow-privfs-probe-" + prefix
	for _, d := range dirs {
		inA := viewPath(pid[A], filepath.Join(d, name))
		if err := os.WriteFile(inA, []byte("hostA\n"), 0o600); err != nil {
			t.Fatalf("write into hostA's view: %v", err)
		}
		for who, p := range map[string]string{"hostB's agent": viewPath(pid[B], filepath.Join(d, name)), "the machine": filepath.Join(d, name)} {
			if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s sees %s written by hostA's agent (%v)", who, filepath.Join(d, name), err)
			}
		}
		if err := os.Remove(inA); err != nil {
			t.Error(err)
		}
	}
	// The other way round: the machine's files are not in an agent's view.
	onMachine := filepath.Join("/tmp", name)
	if err := os.WriteFile(onMachine, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(viewPath(pid[A], onMachine)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("hostA's agent sees the machine's %s (%v)", onMachine, err)
	}
	os.Remove(onMachine)

	// A plain container, whose workload is this binary (the directory of
	// the agent's binary is the one path under /tmp the views keep).
	ip := testbedIP
	if _, err := ag[A].Run(ctx, agent.ContainerSpec{Name: "s", IP: ip,
		Args: []string{"/opt/cflow/bin/" + baseName(self), "workload", "stream-server"}}); err != nil {
		t.Fatal(err)
	}
	conn := dialStream(t, tb, ip)
	defer conn.Stop(context.Background(), time.Second)

	// One from an image that only hostA has (loaded there, stored in its
	// private state directory): the migration must push it to hostB.
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	img, err := ag[A].LoadImage(ctx, f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	imgIP := netip.MustParseAddr("198.18.0.3")
	if _, err := ag[A].Run(ctx, agent.ContainerSpec{Name: "img", IP: imgIP, Image: imagetest.BusyboxRef,
		Args: []string{"/opt/app/cflow", "workload", "stream-server", "--listen", ":9000"}}); err != nil {
		t.Fatal(err)
	}
	imgConn := dialStream(t, tb, imgIP)
	defer imgConn.Stop(context.Background(), time.Second)
	time.Sleep(300 * time.Millisecond)

	from := A
	for i, to := range []string{B, A} {
		for _, c := range []string{"s", "img"} {
			res, err := ag[from].Migrate(ctx, c, agent.MigrateRequest{To: to})
			if err != nil {
				t.Fatalf("migrate %s %s->%s: %v", c, from, to, err)
			}
			r := res.Record
			t.Logf("%s %s->%s: %s, frozen %.0f ms, image staged %d B", c, from, to, r.Status, r.FreezeMs, r.ImageStageB)
			if c == "img" && (i == 0) != (r.ImageStageB > 0) {
				t.Errorf("move %d of img staged %d bytes of image: only the first, to hostB, should", i+1, r.ImageStageB)
			}
			info, err := ag[to].Get(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			if c == "img" && info.ImageDigest != img.Digest {
				t.Errorf("img on %s runs from %q, want %s", to, info.ImageDigest, img.Digest)
			}
			if ns, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(info.Pid), "ns/net")); err == nil {
				nets[ns] = true
			}
			// Its network namespace is named only in its agent's view.
			nsName := tb.ContainerNetnsPrefix(to) + c
			other := map[string]string{A: B, B: A}[to]
			if _, err := os.Lstat(viewPath(pid[to], nsrun.Path(nsName))); err != nil {
				t.Errorf("%s's view lacks %s: %v", to, nsName, err)
			}
			for who, p := range map[string]string{other + "'s agent": viewPath(pid[other], nsrun.Path(nsName)), "the machine": nsrun.Path(nsName)} {
				if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s sees %s (%v)", who, nsName, err)
				}
			}
		}
		from = to
		time.Sleep(300 * time.Millisecond)
	}
	for c, cn := range map[string]*stream.Conn{"s": conn, "img": imgConn} {
		st := cn.Stop(ctx, 5*time.Second)
		if st.Dropped || st.Unanswered() != 0 || st.Echo.Lost+st.Server.Lost+st.Echo.Duplicated+st.Server.Duplicated != 0 {
			t.Errorf("stream of %s damaged: %+v", c, st)
		}
		t.Logf("stream of %s: %d echoes, %d server records, 0 lost", c, st.Echo.Next, st.Server.Next)
	}
	// The image store is private too: hostA's holds the image, the
	// machine's view of the state directory is empty.
	if ents, err := os.ReadDir(tb.AgentStateDir(A)); err != nil || len(ents) != 0 {
		t.Errorf("the machine sees %d entries in hostA's state directory (%v)", len(ents), err)
	}
}

func dialStream(t *testing.T, tb *testbed.Testbed, ip netip.Addr) *stream.Conn {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := tb.Dial(testbed.Client, "tcp4", ip.String()+":9000", time.Second)
		if err == nil {
			return stream.Start(c, 5*time.Millisecond, 20*time.Millisecond)
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// agentPid is the pid of host's agent: the process in its network
// namespace that was started with --private-fs.
func agentPid(t *testing.T, tb *testbed.Testbed, host string) int {
	t.Helper()
	ns, _ := tb.Netns(host)
	pids, err := nsrun.Pids(ns)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pids {
		b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p), "cmdline"))
		if strings.Contains(string(b), "\x00--private-fs\x00") {
			return p
		}
	}
	t.Fatalf("no --private-fs agent among the processes of %s: %v", ns, pids)
	return 0
}

// viewPath is path as the process pid sees it.
func viewPath(pid int, path string) string {
	return filepath.Join("/proc", strconv.Itoa(pid), "root", path)
}

// mountsAt lists the mounts of a process (proc: "self" or a pid) on dirs
// themselves (others may mount below them meanwhile), without their ids.
func mountsAt(t *testing.T, proc string, dirs ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", proc, "mountinfo"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		for _, d := range dirs {
			if f[4] == d {
				out = append(out, strings.Join(f[2:], " "))
			}
		}
	}
	return strings.Join(out, "\n")
}

// checkNothingLeft: no process is in an agent's view or a container's
// network namespace, and no mount namespace of any process on the
// machine still holds a mount of the testbed (by prefix) or of one of
// those network namespaces.
func checkNothingLeft(t *testing.T, prefix string, views, nets map[string]bool) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		mnt, _ := os.Readlink(filepath.Join("/proc", e.Name(), "ns/mnt"))
		net, _ := os.Readlink(filepath.Join("/proc", e.Name(), "ns/net"))
		// Namespace inode numbers are reused: another test's testbed,
		// running in parallel, can have one of ours by now. A process is
		// ours only if its cgroups or command line name our prefix.
		if (views[mnt] || nets[net]) && mentions(e.Name(), prefix) {
			t.Errorf("process %s survived the teardown (%s, %s)", e.Name(), mnt, net)
		}
		if mnt == "" || seen[mnt] {
			continue
		}
		seen[mnt] = true
		f, err := os.Open(filepath.Join("/proc", e.Name(), "mountinfo"))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			l := sc.Text()
			fields := strings.Fields(l)
			if len(fields) < 5 {
				continue
			}
			// A namespace mount named for another testbed is its own,
			// whatever its (reused) inode number.
			other := strings.HasPrefix(fields[4], "/run/netns/") && !strings.HasPrefix(fields[4], "/run/netns/"+prefix)
			if strings.Contains(fields[4], "/"+prefix) || (nets[fields[3]] && !other) {
				t.Errorf("mount left in %s (pid %s): %s", mnt, e.Name(), l)
			}
		}
		f.Close()
	}
	if left, _ := os.ReadDir(filepath.Join(testbed.RunDir, prefix)); len(left) > 0 {
		t.Errorf("state left in %s", filepath.Join(testbed.RunDir, prefix))
	}
}

// An agent that dies leaves its containers running in network namespaces
// that only its (now gone) view named: down must still find and kill
// them, and nothing may be left.
func TestPrivateFSDownAfterAgentCrash(t *testing.T) {
	tbtest.RequireRoot(t, "the testbed, mount namespaces and runc")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var (
		prefix string
		views  = map[string]bool{}
		nets   = map[string]bool{}
	)
	t.Cleanup(func() {
		if prefix != "" {
			checkNothingLeft(t, prefix, views, nets)
		}
	})
	tb := tbtest.Up(t, "q", testbed.Config{AgentBinary: self, PrivateFS: true})
	prefix = tb.Prefix
	tok, err := tb.Token()
	if err != nil {
		t.Fatal(err)
	}
	a := agent.NewClient("unix://"+tb.AgentSocket(testbed.HostA), agent.ClientOptions{Token: tok})
	info, err := a.Run(context.Background(), agent.ContainerSpec{Name: "orphan", IP: testbedIP, Args: []string{"sleep", "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	pid := agentPid(t, tb, testbed.HostA)
	ns, _ := privfs.MountNS(strconv.Itoa(pid))
	views[ns] = true
	net, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(info.Pid), "ns/net"))
	if err != nil {
		t.Fatal(err)
	}
	nets[net] = true
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := testbed.Down(prefix); err != nil {
		t.Fatal(err)
	}
	// Gone, or a zombie for whoever inherited it from the dead agent.
	if b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(info.Pid), "stat")); err == nil {
		if i := strings.LastIndexByte(string(b), ')'); i < 0 || i+2 >= len(b) || b[i+2] != 'Z' {
			t.Errorf("the container's process %d survived down: %s", info.Pid, b)
		}
	}
}

// mentions reports whether process pid's cgroups or command line name
// the testbed prefix.
func mentions(pid, prefix string) bool {
	for _, f := range []string{"cgroup", "cmdline"} {
		if b, err := os.ReadFile(filepath.Join("/proc", pid, f)); err == nil && strings.Contains(string(b), prefix) {
			return true
		}
	}
	return false
}
