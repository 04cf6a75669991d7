package testbed

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerflow/containerflow/internal/nsrun"
)

// The default testbed is the seed's, unchanged by the host count: the
// experiment, the benches and every test rely on these names, ports and
// addresses. Spelled out, not derived, so a change to the plan's code
// cannot move them unnoticed.
func TestDefaultPlanUnchanged(t *testing.T) {
	want := []struct {
		name         string
		port         uint32
		data, mac, m string
	}{
		{"hostA", 1, "198.18.0.11", "02:cf:00:00:00:0b", "198.19.0.11"},
		{"hostB", 2, "198.18.0.12", "02:cf:00:00:00:0c", "198.19.0.12"},
		{"client", 3, "198.18.0.100", "02:cf:00:00:00:64", "198.19.0.100"},
	}
	planned, err := PlanNodes(DefaultHosts)
	if err != nil {
		t.Fatal(err)
	}
	// A handle on state written before the host count existed has none.
	old := &Testbed{Prefix: "old"}
	for _, nodes := range [][]NodeSpec{Nodes, planned, old.Nodes(), (&Testbed{HostCount: 2}).Nodes()} {
		if len(nodes) != len(want) {
			t.Fatalf("%d nodes, want %d: %v", len(nodes), len(want), nodes)
		}
		for i, w := range want {
			n := nodes[i]
			if n.Name != w.name || n.Port != w.port || n.DataIP.String() != w.data || n.MAC.String() != w.mac || n.MgmtIP.String() != w.m {
				t.Errorf("node %d: %s port %d %s %s %s, want %+v", i, n.Name, n.Port, n.DataIP, n.MAC, n.MgmtIP, w)
			}
		}
	}
	for _, hosts := range [][]string{Hosts, HostNames(DefaultHosts), old.Hosts()} {
		if !slices.Equal(hosts, []string{"hostA", "hostB"}) {
			t.Errorf("default hosts %v", hosts)
		}
	}
	if !IsHost(HostA) || !IsHost(HostB) || IsHost(Client) || IsHost("hostC") || old.IsHost("hostC") || !old.IsHost(HostB) {
		t.Error("IsHost of the default plan is wrong")
	}
	cfg := ControllerConfig()
	if len(cfg.Ports) != 3 || cfg.Ports[2].Name != Client || cfg.Ports[2].Number != 3 || cfg.Ports[2].Interface != "sw-client" {
		t.Errorf("default controller ports: %+v", cfg.Ports)
	}
	// The container addresses tests and benches use stay usable.
	for _, ip := range []string{"198.18.0.2", "198.18.0.10", "198.18.0.13", "198.18.0.14", "198.18.0.99"} {
		if err := ValidateContainerIP(netip.MustParseAddr(ip)); err != nil {
			t.Errorf("container address %s: %v", ip, err)
		}
	}
}

// Every host count has a plan without clashes, inside the testbed's
// networks, clear of container addresses, and a host's plan is the same
// whatever the count.
func TestPlanForManyHosts(t *testing.T) {
	var prev []NodeSpec
	for n := MinHosts; n <= MaxHosts; n++ {
		nodes, err := PlanNodes(n)
		if err != nil {
			t.Fatalf("%d hosts: %v", n, err)
		}
		if len(nodes) != n+1 {
			t.Fatalf("%d hosts: %d nodes", n, len(nodes))
		}
		if !slices.EqualFunc(prev, nodes[:len(prev)], func(a, b NodeSpec) bool { return fmt.Sprint(a) == fmt.Sprint(b) }) {
			t.Errorf("%d hosts: the first %d nodes changed: %v, was %v", n, len(prev), nodes, prev)
		}
		prev = nodes
		seen := map[string]string{}
		tb := &Testbed{Prefix: "p", HostCount: n}
		for i, nd := range nodes {
			if nd.Port != uint32(i+1) {
				t.Errorf("%d hosts: %s has port %d, want %d", n, nd.Name, nd.Port, i+1)
			}
			for _, k := range []string{nd.Name, nd.DataIP.String(), nd.MgmtIP.String(), nd.MAC.String()} {
				if other, dup := seen[k]; dup {
					t.Errorf("%d hosts: %s of %s also belongs to %s", n, k, nd.Name, other)
				}
				seen[k] = nd.Name
			}
			if !DataNet.Contains(nd.DataIP) || !MgmtNet.Contains(nd.MgmtIP) || nd.MAC[0]&1 != 0 {
				t.Errorf("%d hosts: %s has %s %s %s", n, nd.Name, nd.DataIP, nd.MgmtIP, nd.MAC)
			}
			// The relay's tap for a port, ifx-sw-NAME, must fit IFNAMSIZ.
			if len("ifx-"+nd.DataPort()) > 15 {
				t.Errorf("%s: interface name %s too long", nd.Name, nd.DataPort())
			}
			if nd.Name == Client {
				continue
			}
			if !tb.IsHost(nd.Name) {
				t.Errorf("%d hosts: %s is not a host", n, nd.Name)
			}
			last := nd.DataIP.As4()[3]
			if last >= 2 && last <= 100 && i >= 2 {
				t.Errorf("%s at %s is among the container addresses tests use", nd.Name, nd.DataIP)
			}
			if err := ValidateContainerIP(nd.DataIP); !errors.Is(err, ErrBadAddress) {
				t.Errorf("%s's address %s accepted for a container: %v", nd.Name, nd.DataIP, err)
			}
		}
		if hosts := tb.Hosts(); len(hosts) != n || hosts[n-1] != "host"+string(rune('A'+n-1)) {
			t.Errorf("%d hosts: %v", n, hosts)
		}
		if cfg := tb.ControllerConfig(); len(cfg.Ports) != n+1 || len(cfg.Addresses) != n+1 {
			t.Errorf("%d hosts: controller config has %d ports, %d addresses", n, len(cfg.Ports), len(cfg.Addresses))
		}
	}
	c, _ := PlannedSpec("hostC")
	p, _ := PlannedSpec("hostP")
	if c.Port != 4 || c.DataIP.String() != "198.18.0.203" || c.MgmtIP.String() != "198.19.0.203" || c.MAC.String() != "02:cf:00:00:00:cb" ||
		p.Port != 17 || p.DataIP.String() != "198.18.0.216" {
		t.Errorf("documented plan: hostC %+v, hostP %+v", c, p)
	}
	if _, err := PlannedSpec("hostQ"); !errors.Is(err, ErrUnknownNode) {
		t.Errorf("hostQ: %v", err)
	}
	// A link of a host the testbed does not have is refused before
	// anything is touched.
	two := &Testbed{Prefix: "p"}
	if _, err := two.parseLink("hostC-mgmt"); !errors.Is(err, ErrBadImpairment) || !errors.Is(err, ErrUnknownNode) {
		t.Errorf("hostC-mgmt on two hosts: %v", err)
	}
	if _, err := (&Testbed{Prefix: "p", HostCount: 3}).parseLink("hostC-mgmt"); err != nil {
		t.Errorf("hostC-mgmt on three hosts: %v", err)
	}
}

// A host count out of range is refused before anything is created.
func TestBadHostCount(t *testing.T) {
	p := testPrefix(t)
	for _, n := range []int{1, -1, MaxHosts + 1, 100} {
		_, err := Up(Config{Prefix: p, Hosts: n})
		if !errors.Is(err, ErrBadHosts) || !strings.Contains(err.Error(), fmt.Sprint(n)) {
			t.Errorf("%d hosts: want ErrBadHosts naming %d, got %v", n, n, err)
		}
	}
	if err := ValidateHosts(0); !errors.Is(err, ErrBadHosts) {
		t.Errorf("ValidateHosts(0): %v (the CLI refuses --hosts 0 with it)", err)
	}
	if left, _ := nsrun.List(p + "-"); len(left) > 0 {
		t.Errorf("namespaces created: %v", left)
	}
	if _, err := os.Stat(filepath.Join(RunDir, p)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory created (%v)", err)
	}
}

// The host count is part of the testbed's state: Open gives it back, and
// refuses state that names an impossible one.
func TestHostCountSaved(t *testing.T) {
	tb := upForTestConfig(t, Config{Hosts: 3, Switch: SwitchBridge})
	o, err := Open(tb.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	if got := o.Hosts(); !slices.Equal(got, []string{"hostA", "hostB", "hostC"}) {
		t.Fatalf("opened testbed has hosts %v", got)
	}
	if _, err := o.Netns("hostD"); !errors.Is(err, ErrUnknownNode) || !strings.Contains(err.Error(), "hostC") {
		t.Errorf("hostD of a three-host testbed: %v", err)
	}
	state := filepath.Join(tb.Dir(), "testbed.json")
	b, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil || m["hosts"] != float64(3) {
		t.Fatalf("state %s: %s (%v)", state, b, err)
	}
	m["hosts"] = MaxHosts + 1
	bad, _ := json.Marshal(m)
	if err := os.WriteFile(state, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(tb.Prefix); !errors.Is(err, ErrBadHosts) {
		t.Errorf("open of state with %d hosts: %v", MaxHosts+1, err)
	}
}

// Four hosts through each switch: every node reaches every other on both
// networks, status is healthy with a port per node, and an address moves
// hostA -> hostC -> hostD with new connections following it.
func TestFourHosts(t *testing.T) {
	for _, kind := range []string{SwitchEBPF, SwitchBridge} {
		t.Run(kind, func(t *testing.T) {
			tb := upForTestConfig(t, Config{Switch: kind, Hosts: 4})
			testHostsReachEachOther(t, tb)
			st, err := tb.Status()
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Nodes) != 6 { // the switch, four hosts, the client
				t.Errorf("status lists %d nodes", len(st.Nodes))
			}
			if kind == SwitchEBPF && (len(st.Switch.Ports) != 5 || st.Switch.Addresses != 5) {
				t.Errorf("switch: %d ports, %d addresses, want 5 and 5", len(st.Switch.Ports), st.Switch.Addresses)
			}

			ip := netip.MustParseAddr("198.18.0.2")
			addr := ip.String() + ":8080"
			prev := ""
			for _, h := range []string{HostA, "hostC", "hostD"} {
				if _, err := tb.AddContainerNet(h, "web", ip, nil); err != nil {
					t.Fatal(err)
				}
				serveHello(t, tb, h+"/web", addr, h)
				if prev != "" {
					if got, err := askHello(tb, Client, addr); err != nil || got != "hello from "+prev {
						t.Fatalf("pre-staged on %s: the client got %q, %v; want %s until the switch moves", h, got, err, prev)
					}
				}
				if err := tb.Steer(ip, nil, h); err != nil {
					t.Fatal(err)
				}
				if got, err := askHello(tb, Client, addr); err != nil || got != "hello from "+h {
					t.Fatalf("after steering to %s: %q, %v", h, got, err)
				}
				if prev != "" {
					if err := tb.RemoveContainerNet(prev, "web"); err != nil {
						t.Fatal(err)
					}
				}
				prev = h
			}
		})
	}
}

// A crash in the middle of bringing up many hosts leaves namespaces of
// hosts whose count was never saved; down still removes them.
func TestDownAfterCrashMidUpManyHosts(t *testing.T) {
	requireRoot(t)
	p := testPrefix(t)
	t.Cleanup(func() { _ = Down(p) })
	// switch, its setup, then two steps per node in port order: hostA,
	// hostB, client, hostC (8, 9), hostD (10, 11): stop after hostD's
	// namespace exists, before its links.
	crashAfterStep = 11
	_, err := Up(Config{Prefix: p, Hosts: 5})
	crashAfterStep = -1
	if !errors.Is(err, errSimulatedCrash) {
		t.Fatalf("want simulated crash, got %v", err)
	}
	left, _ := nsrun.List(p + "-")
	if !slices.Contains(left, p+"-hostD") || slices.Contains(left, p+"-hostE") {
		t.Fatalf("the crash left %v; want hostD and no hostE", left)
	}
	if err := Down(p); err != nil {
		t.Fatal(err)
	}
	assertGone(t, p)
}
