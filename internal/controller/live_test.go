package controller_test

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/controller"
	"github.com/containerflow/containerflow/internal/testbed"
)

// legMAC is the MAC of a server's second leg (see env.leg).
var legMAC = net.HardwareAddr{0x02, 0xcf, 0x00, 0x00, 0x01, 0x01}

func withLegPort(c *controller.Config) {
	c.Ports = append(c.Ports, controller.PortConfig{Number: 4, Interface: "sw-leg", Name: "leg"})
}

// A live TCP connection keeps working, bytes both ways, while its server's
// address is moved back and forth between two ports through the API (v1
// move and the seed's /updateForward): each move is one table update, so
// no packet meets a half-applied entry.
func TestLiveTCPAcrossMovesThroughAPI(t *testing.T) {
	requireRoot(t)
	ip := netip.MustParseAddr("198.18.0.9")
	e := newEnvWithSetup(t, withLegPort, func(e *env) {
		srv := e.container(testbed.HostA, "srv", ip, nil)
		e.leg(srv, legMAC)
	})
	srvMAC := testbed.ContainerMAC(ip)
	if err := e.c.MoveAddress(bg(), ip, "hostA", srvMAC); err != nil {
		t.Fatal(err)
	}
	e.echoServer(testbed.HostA+"/srv", "198.18.0.9:7000", "srv")
	c, err := e.tb.Dial(testbed.Client, "tcp4", "198.18.0.9:7000", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	var (
		stop  atomic.Bool
		trips atomic.Int64
		tcpEr error
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			if err := roundTrip(c, fmt.Sprintf("%d %0200d\n", i, i), "srv"); err != nil {
				tcpEr = err
				return
			}
			trips.Add(1)
		}
	}()
	const moves = 60
	for i := 0; i < moves; i++ {
		var err error
		switch i % 3 {
		case 0:
			err = e.c.MoveAddress(bg(), ip, "leg", legMAC)
		case 1:
			err = e.c.MoveAddress(bg(), ip, "hostA", srvMAC)
		case 2: // the seed's endpoint, to the leg and back in the next round
			err = e.c.UpdateForward(bg(), ip, 4, legMAC)
		}
		if err != nil {
			t.Fatalf("move %d: %v", i, err)
		}
		time.Sleep(15 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if tcpEr != nil {
		t.Fatalf("TCP connection broke across moves after %d round trips: %v", trips.Load(), tcpEr)
	}
	if trips.Load() < moves {
		t.Fatalf("only %d round trips across %d moves", trips.Load(), moves)
	}
	ports, err := e.c.Ports(bg())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ports {
		if (p.Number == 1 || p.Number == 4) && p.TxPackets == 0 {
			t.Errorf("port %d (%s) sent nothing: the moves did not take effect", p.Number, p.Name)
		}
	}
	cs, _ := e.c.Counters(bg())
	for _, k := range []string{"no_route", "port_down", "malformed"} {
		if cs.Global[k] != 0 {
			t.Errorf("drop counter %s = %d", k, cs.Global[k])
		}
	}
	t.Logf("%d round trips across %d moves", trips.Load(), moves)
}

// newEnvWithSetup is newEnv with a step between the testbed and the
// controller (interfaces that configured ports need).
func newEnvWithSetup(t *testing.T, mutate func(*controller.Config), setup func(*env)) *env {
	t.Helper()
	return newEnvOpts(t, mutate, setup)
}

// VIP load balancing and direct flows to a member work at the same time:
// replies of VIP flows are rewritten to the VIP, replies of direct flows
// are not; TCP and UDP.
func TestVIPAndDirectFlowsTogether(t *testing.T) {
	e := newEnv(t, nil)
	ip := netip.MustParseAddr("198.18.0.9")
	srv := e.container(testbed.HostA, "srv", ip, nil)
	vip := "198.18.0.40"
	vipMAC := "02:cf:c6:12:00:28"
	ops := []controller.Op{
		{Op: "move_address", IP: ip.String(), Port: "hostA", DstMAC: srv.MAC.String()},
		{Op: "set_address", IP: vip, ARP: &controller.ARPSpec{ReplyMAC: vipMAC}},
		{Op: "set_service", Service: &controller.ServiceSpec{ServiceRef: controller.ServiceRef{VIP: vip, Port: 80, Proto: "tcp"},
			Members: []controller.MemberSpec{{Addr: ip.String(), Port: 7000}}}},
		{Op: "set_service", Service: &controller.ServiceSpec{ServiceRef: controller.ServiceRef{VIP: vip, Port: 53, Proto: "udp"},
			Members: []controller.MemberSpec{{Addr: ip.String(), Port: 7001}}}},
	}
	if err := e.c.Batch(bg(), ops...); err != nil {
		t.Fatal(err)
	}
	e.echoServer(testbed.HostA+"/srv", "198.18.0.9:7000", "srv")
	viaVIP, err := e.tb.Dial(testbed.Client, "tcp4", vip+":80", 3*time.Second)
	if err != nil {
		t.Fatalf("dial VIP: %v", err)
	}
	defer viaVIP.Close()
	direct, err := e.tb.Dial(testbed.Client, "tcp4", "198.18.0.9:7000", 3*time.Second)
	if err != nil {
		t.Fatalf("dial member directly: %v", err)
	}
	defer direct.Close()
	if got := viaVIP.RemoteAddr().String(); got != vip+":80" {
		t.Errorf("VIP connection's peer %s", got)
	}
	for i := 0; i < 20; i++ {
		if err := roundTrip(viaVIP, fmt.Sprintf("vip %d\n", i), "srv"); err != nil {
			t.Fatalf("via VIP: %v", err)
		}
		if err := roundTrip(direct, fmt.Sprintf("direct %d\n", i), "srv"); err != nil {
			t.Fatalf("direct: %v", err)
		}
	}
	// UDP through the VIP: the reply comes from the VIP's address.
	u := e.listenUDP(testbed.HostA+"/srv", netip.MustParseAddrPort("198.18.0.9:7001"))
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := u.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = u.WriteTo(buf[:n], from)
		}
	}()
	var uc *net.UDPConn
	if err := e.tb.Do(testbed.Client, func() (err error) {
		uc, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(198, 18, 0, 100)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if _, err := uc.WriteTo([]byte("q"), &net.UDPAddr{IP: net.ParseIP(vip), Port: 53}); err != nil {
		t.Fatal(err)
	}
	_ = uc.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 64)
	n, from, err := uc.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "q" || from.String() != vip+":53" {
		t.Fatalf("UDP via VIP: %q from %v, %v (want the VIP)", buf[:n], from, err)
	}
	flows, err := e.c.Conntrack(bg())
	if err != nil {
		t.Fatal(err)
	}
	if len(flows) != 2 {
		t.Fatalf("conntrack: %+v (want the TCP and the UDP VIP flow, not the direct one)", flows)
	}
	for _, f := range flows {
		if !strings.HasPrefix(f.Member, "198.18.0.9:") || !strings.HasPrefix(f.VIP, vip+":") {
			t.Errorf("flow %+v", f)
		}
	}
	svcs, _ := e.c.Services(bg())
	for _, s := range svcs {
		if s.Counters.NewFlows != 1 || s.Counters.Packets == 0 {
			t.Errorf("service %s/%d counters %+v", s.Proto, s.Port, s.Counters)
		}
	}
	code, _ := e.call(http.MethodGet, "/v1/conntrack?member=198.18.0.9&vip="+vip, "", "")
	if code != http.StatusOK {
		t.Errorf("conntrack filter: HTTP %d", code)
	}
}
