package testbed

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/nsrun"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces (CI runs as root)")
	}
}

func testPrefix(t *testing.T) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return "t" + hex.EncodeToString(b)
}

// upForTest brings a testbed up and registers its teardown, plus a final
// check that nothing with its prefix survived.
func upForTest(t *testing.T) *Testbed { return upForTestMode(t, "") }

// upForTestMode is upForTest with a switch kind ("" for the default).
func upForTestMode(t *testing.T, kind string) *Testbed {
	return upForTestConfig(t, Config{Switch: kind})
}

// upForTestConfig is upForTest with a configuration (its prefix is chosen
// here).
func upForTestConfig(t *testing.T, cfg Config) *Testbed {
	t.Helper()
	requireRoot(t)
	p := testPrefix(t)
	t.Cleanup(func() {
		if err := Down(p); err != nil {
			t.Errorf("down %s: %v", p, err)
		}
		assertGone(t, p)
	})
	cfg.Prefix = p
	tb, err := Up(cfg)
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	return tb
}

func assertGone(t *testing.T, prefix string) {
	t.Helper()
	left, err := nsrun.List(prefix + "-")
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
	if _, err := os.Stat(RunDir + "/" + prefix); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir %s/%s left behind (%v)", RunDir, prefix, err)
	}
	if _, err := os.Lstat(pinPath(prefix)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("switch pins %s left behind (%v)", pinPath(prefix), err)
	}
	out, _ := exec.Command("ip", "-o", "link", "show").Output()
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, prefix) {
			t.Errorf("link left in root namespace: %s", l)
		}
	}
}

// serveHello answers every connection with "hello from NODE\n".
func serveHello(t *testing.T, tb *Testbed, node, addr, who string) net.Listener {
	t.Helper()
	l, err := tb.Listen(node, "tcp4", addr)
	if err != nil {
		t.Fatalf("listen in %s on %s: %v", node, addr, err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "hello from %s\n", who)
			c.Close()
		}
	}()
	return l
}

func TestHostsReachEachOtherThroughSwitch(t *testing.T) {
	forEachSwitch(t, testHostsReachEachOther)
}

// forEachSwitch runs a test against a testbed of each switch kind.
func forEachSwitch(t *testing.T, fn func(t *testing.T, tb *Testbed)) {
	for _, kind := range []string{SwitchEBPF, SwitchBridge} {
		t.Run(kind, func(t *testing.T) { fn(t, upForTestMode(t, kind)) })
	}
}

func testHostsReachEachOther(t *testing.T, tb *Testbed) {
	for _, n := range tb.Nodes() {
		serveHello(t, tb, n.Name, n.DataIP.String()+":7000", n.Name)
		serveHello(t, tb, n.Name, n.MgmtIP.String()+":7001", n.Name+"-mgmt")
	}
	for _, from := range tb.Nodes() {
		for _, to := range tb.Nodes() {
			if from.Name == to.Name {
				continue
			}
			got, err := askHello(tb, from.Name, to.DataIP.String()+":7000")
			if err != nil || got != "hello from "+to.Name {
				t.Errorf("%s -> %s data: %q, %v", from.Name, to.Name, got, err)
			}
			got, err = askHello(tb, from.Name, to.MgmtIP.String()+":7001")
			if err != nil || got != "hello from "+to.Name+"-mgmt" {
				t.Errorf("%s -> %s mgmt: %q, %v", from.Name, to.Name, got, err)
			}
		}
	}
	st, err := tb.Status()
	if err != nil {
		t.Fatal(err)
	}
	if !st.Healthy() {
		var b strings.Builder
		st.Print(&b)
		t.Errorf("status not healthy:\n%s", b.String())
	}
}

// The seed's same-IP migration at the network level (see Smoke): new
// connections follow the address from hostA to hostB once the switch is
// pointed there, and not before.
func TestContainerAddressMovesBetweenHosts(t *testing.T) {
	forEachSwitch(t, testContainerAddressMoves)
}

func testContainerAddressMoves(t *testing.T, tb *Testbed) {
	var log strings.Builder
	if err := tb.Smoke(&log); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Log(log.String())
	for _, h := range Hosts {
		if names, _ := tb.ContainerNets(h); len(names) != 0 {
			t.Errorf("smoke left container namespaces on %s: %v", h, names)
		}
	}
}

func TestDownRemovesEverything(t *testing.T) {
	requireRoot(t)
	p := testPrefix(t)
	tb, err := Up(Config{Prefix: p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Down(p) })
	if _, err := tb.AddContainerNet(HostB, "db", netip.MustParseAddr("198.18.0.3"), nil); err != nil {
		t.Fatal(err)
	}
	// Processes inside nodes must die with the testbed.
	var pids []int
	for _, node := range []string{Switch, HostA, HostB + "/db"} {
		ns, _ := tb.Netns(node)
		cmd := exec.Command("sleep", "600")
		if err := nsrun.Start(ns, cmd); err != nil {
			t.Fatal(err)
		}
		go cmd.Wait() //nolint:errcheck // reaped so the kill is observable
		pids = append(pids, cmd.Process.Pid)
	}
	if err := Down(p); err != nil {
		t.Fatal(err)
	}
	assertGone(t, p)
	for _, pid := range pids {
		if !processGone(pid) {
			t.Errorf("process %d survived down", pid)
		}
	}
	if err := Down(p); err != nil {
		t.Errorf("second down should be a no-op: %v", err)
	}
}

func processGone(pid int) bool {
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(err, os.ErrNotExist) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func TestDownAfterCrashMidUp(t *testing.T) {
	requireRoot(t)
	for _, step := range []int{1, 3, 6} {
		t.Run(fmt.Sprint("step", step), func(t *testing.T) {
			p := testPrefix(t)
			t.Cleanup(func() { _ = Down(p) })
			crashAfterStep = step
			_, err := Up(Config{Prefix: p})
			crashAfterStep = -1
			if !errors.Is(err, errSimulatedCrash) {
				t.Fatalf("want simulated crash, got %v", err)
			}
			left, _ := nsrun.List(p + "-")
			if len(left) == 0 {
				t.Fatal("the crash left nothing behind; the test proves nothing")
			}
			if _, err := Open(p); err == nil || !strings.Contains(err.Error(), "incomplete") {
				t.Errorf("open of a crashed testbed: want 'incomplete', got %v", err)
			}
			if _, err := Up(Config{Prefix: p}); !errors.Is(err, ErrExists) {
				t.Errorf("up over leftovers: want ErrExists, got %v", err)
			}
			if err := Down(p); err != nil {
				t.Fatal(err)
			}
			assertGone(t, p)
		})
	}
}

func TestBadInput(t *testing.T) {
	tb := upForTest(t)
	if _, err := Up(Config{Prefix: tb.Prefix}); !errors.Is(err, ErrExists) {
		t.Errorf("second up: want ErrExists, got %v", err)
	}
	for _, p := range []string{"", "Bad", "has-dash", "toolongprefix", "1abc"} {
		if p == "" {
			continue // empty means the default prefix
		}
		if _, err := Up(Config{Prefix: p}); !errors.Is(err, ErrBadPrefix) {
			t.Errorf("prefix %q: want ErrBadPrefix, got %v", p, err)
		}
	}
	if err := tb.Do("hostC", func() error { return nil }); !errors.Is(err, ErrUnknownNode) {
		t.Errorf("unknown node: want ErrUnknownNode, got %v", err)
	}
	if _, err := tb.AddContainerNet(Client, "x", netip.MustParseAddr("198.18.0.5"), nil); !errors.Is(err, ErrUnknownNode) {
		t.Errorf("container on client: want ErrUnknownNode, got %v", err)
	}
	for _, ip := range []string{"10.0.0.5", "198.18.0.11", "198.18.1.5", "198.18.0.0"} {
		if _, err := tb.AddContainerNet(HostA, "x", netip.MustParseAddr(ip), nil); !errors.Is(err, ErrBadAddress) {
			t.Errorf("container ip %s: want ErrBadAddress, got %v", ip, err)
		}
	}
	if _, err := tb.AddContainerNet(HostA, "bad-name", netip.MustParseAddr("198.18.0.5"), nil); !errors.Is(err, ErrBadName) {
		t.Errorf("bad name: want ErrBadName, got %v", err)
	}
	mc, _ := net.ParseMAC("01:00:5e:00:00:01")
	if _, err := tb.AddContainerNet(HostA, "x", netip.MustParseAddr("198.18.0.5"), mc); !errors.Is(err, ErrBadAddress) {
		t.Errorf("multicast MAC: want ErrBadAddress, got %v", err)
	}
	if _, err := tb.AddContainerNet(HostA, "x", netip.MustParseAddr("198.18.0.5"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.AddContainerNet(HostA, "x", netip.MustParseAddr("198.18.0.5"), nil); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate container: want ErrExists, got %v", err)
	}
	if _, err := Open("tzzzzzz"); !errors.Is(err, ErrNotFound) {
		t.Errorf("open missing: want ErrNotFound, got %v", err)
	}
}
