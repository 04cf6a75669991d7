package controller_test

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/containerflow/containerflow/internal/controller"
	"github.com/containerflow/containerflow/internal/testbed"
)

// The seed's scripts' calls, with their bodies, against real packets.
func TestSeedEndpoints(t *testing.T) {
	e := newEnv(t, func(c *controller.Config) {
		// A seed-style service: VIP 198.18.0.40:8080 with one member,
		// a node on hostA's port.
		c.LoadBalancerIP = "198.18.0.40"
		c.ServicePort = 8080
		c.Nodes = []controller.SeedNode{{IPv4: "198.18.0.21", SwPort: "1", DstMAC: "02:cf:00:00:00:0b", IsLBNode: true}}
	})
	ip := netip.MustParseAddr("198.18.0.20")
	ca := e.container(testbed.HostA, "web", ip, nil)
	e.container(testbed.HostB, "web", ip, ca.MAC)
	la := e.listenUDP(testbed.HostA+"/web", netip.AddrPortFrom(ip, 9000))
	lb := e.listenUDP(testbed.HostB+"/web", netip.AddrPortFrom(ip, 9000))
	dst := netip.AddrPortFrom(ip, 9000)

	// /updateForward, as cr_hw.sh sends it (number port, dst_mac).
	e.mustCall(http.StatusOK, "POST", "/updateForward", `{"ipv4":"198.18.0.20", "sw_port":1, "dst_mac":"`+ca.MAC.String()+`"}`)
	if got := e.udpCount(dst, 30, la, lb); got[0] != 30 || got[1] != 0 {
		t.Fatalf("after /updateForward to port 1: hostA %d, hostB %d (want 30, 0)", got[0], got[1])
	}
	// sw_port as a string, as int(sw_port) in the seed accepted.
	b := e.mustCall(http.StatusOK, "POST", "/updateForward", `{"ipv4":"198.18.0.20","sw_port":"2"}`)
	if !strings.Contains(string(b), `"status":"success"`) {
		t.Errorf("seed answer %s", b)
	}
	if got := e.udpCount(dst, 30, la, lb); got[0] != 0 || got[1] != 30 {
		t.Fatalf("after /updateForward to port 2: hostA %d, hostB %d (want 0, 30)", got[0], got[1])
	}
	a, err := e.c.Address(bg(), ip)
	if err != nil || a.Forward == nil || a.Forward.Port != "2" || a.ARP == nil || a.ARP.Port != "2" || a.Forward.PortName != "hostB" {
		t.Fatalf("entry after move: %+v %v", a, err)
	}

	// /addForward: insert, idempotent, conflict.
	e.mustCall(http.StatusOK, "POST", "/addForward", `{"dst_addr":"198.18.0.30","port":1}`)
	e.mustCall(http.StatusOK, "POST", "/addForward", `{"dst_addr":"198.18.0.30","port":1}`)
	b = e.mustCall(http.StatusConflict, "POST", "/addForward", `{"dst_addr":"198.18.0.30","port":2}`)
	if !strings.Contains(string(b), `"field":"dst_addr"`) {
		t.Errorf("conflict answer %s", b)
	}

	// /migrateNode: the member is readdressed; the new address gets the
	// old one's port.
	e.mustCall(http.StatusOK, "POST", "/migrateNode", `{"old_ipv4":"198.18.0.21","new_ipv4":"198.18.0.22"}`)
	svcs, err := e.c.Services(bg())
	if err != nil || len(svcs) != 1 || len(svcs[0].Members) != 1 || svcs[0].Members[0].Addr != "198.18.0.22" {
		t.Fatalf("service after migrateNode: %+v %v", svcs, err)
	}
	if a, err := e.c.Address(bg(), netip.MustParseAddr("198.18.0.22")); err != nil || a.Forward.Port != "1" {
		t.Fatalf("new member's entry: %+v %v", a, err)
	}
	e.mustCall(http.StatusOK, "POST", "/migrateNode", `{"old_ipv4":"198.18.0.22","new_ipv4":"198.18.0.22"}`)
	b = e.mustCall(http.StatusNotFound, "POST", "/migrateNode", `{"old_ipv4":"198.18.0.99","new_ipv4":"198.18.0.23"}`)
	if !strings.Contains(string(b), `"field":"old_ipv4"`) {
		t.Errorf("unknown member answer %s", b)
	}
	e.mustCall(http.StatusBadRequest, "POST", "/migrateNode", `{"old_ipv4":"198.18.0.22"}`)

	// /deleteClientSnat: nothing to delete, success.
	e.mustCall(http.StatusOK, "POST", "/deleteClientSnat", ``)

	// /cleanup empties the tables (and the stored state); traffic stops.
	e.mustCall(http.StatusOK, "POST", "/cleanup", ``)
	if as, err := e.c.Addresses(bg()); err != nil || len(as) != 0 {
		t.Fatalf("addresses after cleanup: %+v %v", as, err)
	}
	if got := e.udpCount(dst, 10, la, lb); got[0]+got[1] != 0 {
		t.Fatalf("traffic after cleanup: %v", got)
	}
	e.restart()
	if as, _ := e.c.Addresses(bg()); len(as) != 0 {
		t.Fatalf("cleanup not persisted: %d entries after restart", len(as))
	}

	// /reinitialize brings the configuration back, as at a first start;
	// the run script also uses it (POST, empty body) as a liveness probe.
	e.mustCall(http.StatusOK, "POST", "/reinitialize", ``)
	st := e.ctl.State()
	if len(st.Addresses) != 3+2 || len(st.Services) != 1 { // nodes, the seed node, the VIP
		t.Fatalf("state after reinitialize: %d addresses, %d services", len(st.Addresses), len(st.Services))
	}
	for _, n := range testbed.Nodes {
		if _, err := e.c.Address(bg(), n.DataIP); err != nil {
			t.Errorf("node %s after reinitialize: %v", n.Name, err)
		}
	}
	// A second reinitialize changes nothing: counters of entries that
	// already match keep running (the entries were not rewritten).
	e.udpCount(netip.AddrPortFrom(testbed.Nodes[1].DataIP, 9), 5)
	before, _ := e.c.Address(bg(), testbed.Nodes[1].DataIP)
	e.mustCall(http.StatusOK, "POST", "/reinitialize", ``)
	after, _ := e.c.Address(bg(), testbed.Nodes[1].DataIP)
	if before.Counters.Packets == 0 || after.Counters.Packets < before.Counters.Packets {
		t.Errorf("reinitialize rewrote an unchanged entry: packets %d -> %d", before.Counters.Packets, after.Counters.Packets)
	}
}
