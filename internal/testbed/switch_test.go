package testbed

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/nsrun"
)

func TestEBPFSwitchIsTheDefault(t *testing.T) {
	tb := upForTest(t)
	if tb.Switch != SwitchEBPF {
		t.Fatalf("default switch %q, want %q", tb.Switch, SwitchEBPF)
	}
	if o, err := Open(tb.Prefix); err != nil || o.Switch != SwitchEBPF {
		t.Fatalf("open: %+v, %v", o, err)
	}
	st, err := tb.Status()
	if err != nil {
		t.Fatal(err)
	}
	if !st.Healthy() || len(st.Switch.Ports) != len(Nodes) || st.Switch.Addresses != len(Nodes) {
		var b strings.Builder
		st.Print(&b)
		t.Fatalf("switch status: %+v\n%s", st.Switch, b.String())
	}
	for _, n := range st.Nodes {
		for _, l := range n.Links {
			if l.Name == DataBridge {
				t.Errorf("%s has a %s with the eBPF switch", n.Node, DataBridge)
			}
		}
	}
	if _, err := os.Stat(tb.PinPath()); err != nil {
		t.Errorf("pins: %v", err)
	}
}

// A pre-staged destination with the same IP and MAC must not see a single
// packet before Steer, and must see them all after (eBPF switch; the bridge
// version is the smoke test).
func TestEBPFPreStagedDestinationGetsNothingBeforeSteer(t *testing.T) {
	tb := upForTest(t)
	ip := netip.MustParseAddr("198.18.0.7")
	ca, err := tb.AddContainerNet(HostA, "web", ip, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.Steer(ip, ca.MAC, HostA); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.AddContainerNet(HostB, "web", ip, ca.MAC); err != nil {
		t.Fatal(err)
	}
	listen := func(host string) *net.UDPConn {
		var c *net.UDPConn
		if err := tb.Do(host+"/web", func() (err error) {
			c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: ip.AsSlice(), Port: 9000})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	ua, ub := listen(HostA), listen(HostB)
	send := func(n int) {
		c, err := tb.Dial(Client, "udp4", netip.AddrPortFrom(ip, 9000).String(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for i := 0; i < n; i++ {
			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Millisecond)
		}
	}
	count := func(c *net.UDPConn) int {
		n := 0
		buf := make([]byte, 64)
		for {
			_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if _, _, err := c.ReadFrom(buf); err != nil {
				return n
			}
			n++
		}
	}
	send(50)
	if a, b := count(ua), count(ub); a != 50 || b != 0 {
		t.Fatalf("before steer: hostA got %d/50, pre-staged hostB got %d (want 0)", a, b)
	}
	if err := tb.Steer(ip, ca.MAC, HostB); err != nil {
		t.Fatal(err)
	}
	send(50)
	if a, b := count(ua), count(ub); a != 0 || b != 50 {
		t.Fatalf("after steer: hostA got %d (want 0), hostB got %d/50", a, b)
	}
	dp, err := tb.OpenDataplane()
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	e, err := dp.Address(ip)
	if err != nil || e.Forward == nil || e.Forward.Port != 2 || e.ARP == nil || e.ARP.Port != 2 {
		t.Fatalf("entry after steer: %+v, %v", e, err)
	}
	if e.Counters.Packets < 100 {
		t.Errorf("address counter %d, want >= 100", e.Counters.Packets)
	}
}

func TestDownAfterCrashAfterDataplane(t *testing.T) {
	requireRoot(t)
	p := testPrefix(t)
	t.Cleanup(func() { _ = Down(p) })
	crashAfterStep = 9 // switch ns, 3 x (node, link), dataplane: crash before saving state
	_, err := Up(Config{Prefix: p})
	crashAfterStep = -1
	if !errors.Is(err, errSimulatedCrash) {
		t.Fatalf("want simulated crash, got %v", err)
	}
	if _, err := os.Stat(pinPath(p)); err != nil {
		t.Fatalf("the crash left no pins; the test proves nothing: %v", err)
	}
	if err := Down(p); err != nil {
		t.Fatal(err)
	}
	assertGone(t, p)
}

func TestBadSwitchKind(t *testing.T) {
	requireRoot(t)
	if _, err := Up(Config{Prefix: testPrefix(t), Switch: "ovs"}); !errors.Is(err, ErrBadSwitch) {
		t.Fatalf("want ErrBadSwitch, got %v", err)
	}
}

// buildCflow builds the cflow binary for tests that run the controller as
// its own process, as `cflow testbed up` does.
func buildCflow(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	bin := filepath.Join(t.TempDir(), "cflow")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/cflow")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build cflow: %v\n%s", err, out)
	}
	return bin
}

// With a controller running (as `cflow testbed up` starts it), Steer goes
// through its API, status shows it, and Down kills it and removes the pins.
func TestControllerProcessInTestbed(t *testing.T) {
	requireRoot(t)
	bin := buildCflow(t)
	tb := upForTest(t)
	if err := tb.StartController(bin); err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("198.18.0.8")
	if err := tb.Steer(ip, nil, HostB); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, err := tb.ControllerClient().Address(ctx, ip)
	if err != nil || a.Forward == nil || a.Forward.PortName != HostB || a.Forward.DstMAC != ContainerMAC(ip).String() {
		t.Fatalf("controller's entry: %+v, %v", a, err)
	}
	// Agents reach it on the management network.
	c, err := tb.Dial(HostA, "tcp4", strings.TrimPrefix(ControllerURL(), "http://"), time.Second)
	if err != nil {
		t.Fatalf("controller not reachable from hostA: %v", err)
	}
	c.Close()
	st, err := tb.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Switch.Controller != ControllerURL() || !st.Healthy() || st.Switch.Addresses != len(Nodes)+1 {
		t.Fatalf("status: %+v", st.Switch)
	}
	pids, _ := nsrun.Pids(tb.mustNetns(Switch))
	if len(pids) == 0 {
		t.Fatal("no controller process in the switch namespace")
	}
	if err := Down(tb.Prefix); err != nil {
		t.Fatal(err)
	}
	assertGone(t, tb.Prefix)
	for _, pid := range pids {
		if !processGone(pid) {
			t.Errorf("controller process %d survived down", pid)
		}
	}
}
