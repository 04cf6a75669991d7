package dataplane

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// End-to-end tests: real packets between network namespaces through the
// program attached to the switch namespace's ports.

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func hostMAC(i byte) net.HardwareAddr { return net.HardwareAddr{0x02, 0xdf, 0, 0, 0, i} }

func checkNoDrops(t *testing.T, d *Dataplane, reasons ...string) {
	t.Helper()
	g := globals(t, d)
	for _, r := range reasons {
		if g[r] != 0 {
			t.Errorf("counter %s = %d, want 0 (all: %v)", r, g[r], g)
		}
	}
}

func TestE2EForwardingAndFlood(t *testing.T) {
	n := newTestNet(t)
	h1 := n.addHost("h1", 1, addr("198.18.0.1"), hostMAC(1))
	h2 := n.addHost("h2", 2, addr("198.18.0.2"), hostMAC(2))
	n.addHost("h3", 3, addr("198.18.0.3"), hostMAC(3))
	d := n.loadSwitch(Options{}, 1, 2, 3)

	// Forward views only: ARP has no entry and must be flooded. h2 is
	// routed (MAC rewrite, TTL - 1), h1 switched.
	if err := d.SetForward(h1.ip, Forward{Port: 1}); err != nil {
		t.Fatal(err)
	}
	if err := d.SetForward(h2.ip, Forward{Port: 2, DstMAC: h2.mac}); err != nil {
		t.Fatal(err)
	}
	serveNamed(t, h2.listenTCP(t, ":7000"), "h2")
	c, err := dialNamed(h1.nsHandle, "198.18.0.2:7000")
	if err != nil {
		t.Fatalf("h1 -> h2: %v (counters %v)", err, globals(t, d))
	}
	defer c.Close()
	for i := range 10 {
		if err := c.roundTrip(fmt.Sprintf("line %d", i)); err != nil {
			t.Fatal(err)
		}
	}

	g := globals(t, d)
	if g["arp_flooded"] == 0 || g["routed"] == 0 || g["switched"] == 0 {
		t.Errorf("want flooded ARP, routed and switched packets; counters %v", g)
	}
	checkNoDrops(t, d, "no_route", "port_down", "ttl_exceeded", "malformed", "unknown_ingress")
	cnt, _ := d.Counters()
	for p := uint32(1); p <= 2; p++ {
		pc := cnt.Ports[p]
		if pc.RxPackets == 0 || pc.TxPackets == 0 || pc.RxBytes == 0 || pc.TxBytes == 0 {
			t.Errorf("port %d counters %+v, want traffic both ways", p, pc)
		}
	}
	if cnt.Ports[3].TxPackets == 0 {
		t.Errorf("port 3 got no flooded ARP: %+v", cnt.Ports[3])
	}
	a, _ := d.Address(h2.ip)
	if a.Counters.Packets < 10 {
		t.Errorf("address counters of h2: %+v", a.Counters)
	}
	ports, err := d.Ports()
	if err != nil || len(ports) != 3 || ports[0].Name != "p1" || ports[0].Mode != "tcx" {
		t.Errorf("Ports: %+v, %v", ports, err)
	}
}

// TestE2ESameIPMove: two hosts with the same IP and MAC on different ports
// (the source and destination of a same-IP migration); one address update
// sends new connections to the other host.
func TestE2ESameIPMove(t *testing.T) {
	n := newTestNet(t)
	client := n.addHost("c", 1, addr("198.18.0.100"), hostMAC(100))
	srvIP, srvMAC := addr("198.18.0.2"), hostMAC(2)
	a := n.addHost("a", 2, srvIP, srvMAC)
	b := n.addHost("b", 3, srvIP, srvMAC)
	d := n.loadSwitch(Options{}, 1, 2, 3)
	if err := d.MoveAddress(client.ip, 1, nil); err != nil {
		t.Fatal(err)
	}
	serveNamed(t, a.listenTCP(t, ":7000"), "a")
	serveNamed(t, b.listenTCP(t, ":7000"), "b")

	for i, want := range []struct {
		port uint32
		peer string
	}{{2, "a"}, {3, "b"}, {2, "a"}, {3, "b"}} {
		if err := d.MoveAddress(srvIP, want.port, srvMAC); err != nil {
			t.Fatal(err)
		}
		c, err := dialNamed(client.nsHandle, "198.18.0.2:7000")
		if err != nil {
			t.Fatalf("step %d: dial: %v", i, err)
		}
		if c.peer != want.peer {
			t.Errorf("step %d: reached %q, want %q", i, c.peer, want.peer)
		}
		if err := c.roundTrip("hi"); err != nil {
			t.Errorf("step %d: %v", i, err)
		}
		c.Close()
	}
}

// TestE2ELiveFlowAcrossMoves flips the address of a live server between two
// switch ports many times while a TCP connection exchanges data both ways
// and a UDP stream flows: the server host has an interface on each port, so
// both ends of every flip deliver, and any packet lost would be the switch's
// doing. Each move is one map update, so the switch drops nothing.
func TestE2ELiveFlowAcrossMoves(t *testing.T) {
	n := newTestNet(t)
	client := n.addHost("c", 1, addr("198.18.0.100"), hostMAC(100))
	srv := n.addHost("s", 2, addr("198.18.0.2"), hostMAC(2))
	mac1 := hostMAC(0x12)
	// Second leg: the same address as /32, so replies keep leaving eth0.
	n.plug(srv.nsHandle, "eth1", 3, mac1, netip.PrefixFrom(srv.ip, 32))
	d := n.loadSwitch(Options{}, 1, 2, 3)
	if err := d.MoveAddress(client.ip, 1, nil); err != nil {
		t.Fatal(err)
	}
	if err := d.MoveAddress(srv.ip, 2, srv.mac); err != nil {
		t.Fatal(err)
	}

	serveNamed(t, srv.listenTCP(t, ":7000"), "s")
	udpSrv := srv.listenUDP(t, "198.18.0.2:7001")
	_ = udpSrv.SetReadBuffer(4 << 20)
	c, err := dialNamed(client.nsHandle, "198.18.0.2:7000")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	udpCli := client.dialUDP(t, "198.18.0.2:7001")

	const datagrams = 2000
	var (
		stop      atomic.Bool
		trips     atomic.Int64
		tcpErr    error
		received  = make(map[uint32]bool)
		recvMu    sync.Mutex
		wg        sync.WaitGroup
		udpDone   = make(chan struct{})
		sendError error
	)
	wg.Add(3)
	go func() { // TCP: round trips until told to stop
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			if err := c.roundTrip(fmt.Sprintf("%d %0100d", i, i)); err != nil {
				tcpErr = err
				return
			}
			trips.Add(1)
		}
	}()
	go func() { // UDP receiver
		defer wg.Done()
		buf := make([]byte, 64)
		for {
			_ = udpSrv.SetReadDeadline(time.Now().Add(2 * time.Second))
			nr, err := udpSrv.Read(buf)
			if err != nil {
				return
			}
			if nr >= 4 {
				recvMu.Lock()
				received[binary.BigEndian.Uint32(buf)] = true
				full := len(received) == datagrams
				recvMu.Unlock()
				if full {
					return
				}
			}
		}
	}()
	go func() { // UDP sender, paced so socket buffers never overflow
		defer wg.Done()
		defer close(udpDone)
		var b [4]byte
		for i := range uint32(datagrams) {
			binary.BigEndian.PutUint32(b[:], i)
			if _, err := udpCli.Write(b[:]); err != nil {
				sendError = err
				return
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()

	flips := 0
	for {
		select {
		case <-udpDone:
		default:
			port, mac := uint32(3), mac1
			if flips%2 == 1 {
				port, mac = 2, srv.mac
			}
			if err := d.MoveAddress(srv.ip, port, mac); err != nil {
				t.Fatal(err)
			}
			flips++
			time.Sleep(5 * time.Millisecond)
			continue
		}
		break
	}
	stop.Store(true)
	wg.Wait()

	if tcpErr != nil || sendError != nil {
		t.Fatalf("tcp: %v; udp send: %v", tcpErr, sendError)
	}
	if len(received) != datagrams {
		t.Errorf("received %d of %d datagrams across %d moves", len(received), datagrams, flips)
	}
	if trips.Load() < int64(flips) {
		t.Errorf("only %d TCP round trips across %d moves", trips.Load(), flips)
	}
	checkNoDrops(t, d, "no_route", "port_down", "malformed", "ttl_exceeded")
	cnt, _ := d.Counters()
	if cnt.Ports[2].TxPackets == 0 || cnt.Ports[3].TxPackets == 0 {
		t.Errorf("traffic did not use both legs: %+v", cnt.Ports)
	}
	t.Logf("%d moves, %d TCP round trips, %d datagrams", flips, trips.Load(), len(received))
}

// lbNet is a client, four (optionally five) members and a VIP.
type lbNet struct {
	n       *testNet
	d       *Dataplane
	client  *testHost
	members []*testHost
	vip     netip.Addr
	tcp     ServiceKey
	udp     ServiceKey
}

func newLBNet(t *testing.T, members int) *lbNet {
	n := newTestNet(t)
	l := &lbNet{n: n, vip: addr("198.18.2.1")}
	l.client = n.addHost("c", 1, addr("198.18.0.100"), hostMAC(100))
	ports := []uint32{1}
	for i := 1; i <= members; i++ {
		ip := netip.AddrFrom4([4]byte{198, 18, 1, byte(i)})
		l.members = append(l.members, n.addHost(fmt.Sprintf("m%d", i), uint32(1+i), ip, hostMAC(byte(i))))
		ports = append(ports, uint32(1+i))
	}
	l.d = n.loadSwitch(Options{}, ports...)
	if err := l.d.MoveAddress(l.client.ip, 1, nil); err != nil {
		t.Fatal(err)
	}
	for i, m := range l.members {
		if err := l.d.MoveAddress(m.ip, uint32(2+i), m.mac); err != nil {
			t.Fatal(err)
		}
		serveNamed(t, m.listenTCP(t, ":8080"), fmt.Sprintf("m%d", i+1))
		serveUDPNamed(t, m.listenUDP(t, ":9000"), fmt.Sprintf("m%d", i+1))
	}
	if err := l.d.SetARP(l.vip, ARP{ReplyMAC: hostMAC(0xfe)}); err != nil {
		t.Fatal(err)
	}
	l.tcp = ServiceKey{VIP: l.vip, Port: 80, Proto: ProtoTCP}
	l.udp = ServiceKey{VIP: l.vip, Port: 53, Proto: ProtoUDP}
	return l
}

func (l *lbNet) memberList(idx ...int) []Member {
	var ms []Member
	for _, i := range idx {
		ms = append(ms, Member{Addr: l.members[i-1].ip})
	}
	return ms
}

func (l *lbNet) setService(t *testing.T, k ServiceKey, port uint16, ms []Member) {
	t.Helper()
	for i := range ms {
		ms[i].Port = port
	}
	mustSetService(t, l.d, k, ms...)
}

func TestE2ELoadBalancing(t *testing.T) {
	l := newLBNet(t, 4)
	l.setService(t, l.tcp, 8080, l.memberList(1, 2, 3, 4))
	l.setService(t, l.udp, 9000, l.memberList(1, 2, 3, 4))
	vip := "198.18.2.1:80"

	// Spread: many short connections through the VIP.
	const conns = 200
	count := map[string]int{}
	for i := range conns {
		c, err := dialNamed(l.client.nsHandle, vip)
		if err != nil {
			t.Fatalf("connection %d to the VIP: %v (counters %v)", i, err, globals(t, l.d))
		}
		if err := c.roundTrip("x"); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		count[c.peer]++
		c.Close()
	}
	for i := 1; i <= 4; i++ {
		if got := count[fmt.Sprintf("m%d", i)]; got < conns/4/2 || got > conns/4*3/2 {
			t.Errorf("member m%d got %d of %d connections, want %d +- 50%%: %v", i, got, conns, conns/4, count)
		}
	}

	// VIP and direct traffic to a member at the same time: replies are
	// rewritten for the VIP flow only (a wrongly rewritten reply would
	// never complete the direct handshake).
	viaVIP, err := dialNamed(l.client.nsHandle, vip)
	if err != nil {
		t.Fatal(err)
	}
	defer viaVIP.Close()
	direct, err := dialNamed(l.client.nsHandle, "198.18.1.1:8080")
	if err != nil {
		t.Fatalf("direct connection to m1 beside VIP flows: %v", err)
	}
	defer direct.Close()
	for i := range 5 {
		if err := viaVIP.roundTrip(fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
		if err := direct.roundTrip(fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	if direct.RemoteAddr().String() != "198.18.1.1:8080" || viaVIP.RemoteAddr().String() != vip {
		t.Errorf("peers %s and %s", direct.RemoteAddr(), viaVIP.RemoteAddr())
	}

	// UDP through the VIP: a connected socket accepts only datagrams from
	// VIP:53, so every answer proves the reverse NAT.
	udpCount := map[string]int{}
	for i := range 40 {
		c := l.client.dialUDP(t, "198.18.2.1:53")
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Write([]byte("q")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 16)
		nr, err := c.Read(buf)
		if err != nil {
			t.Fatalf("udp query %d through the VIP: %v (counters %v)", i, err, globals(t, l.d))
		}
		udpCount[string(buf[:nr])]++
		c.Close()
	}
	if len(udpCount) < 3 {
		t.Errorf("UDP flows reached only %v", udpCount)
	}

	g := globals(t, l.d)
	if g["lb_new_flow"] < conns || g["lb_dnat"] == 0 || g["lb_snat"] == 0 {
		t.Errorf("load balancer counters %v", g)
	}
	checkNoDrops(t, l.d, "no_route", "port_down", "malformed", "lb_no_member")
	s, _ := l.d.Service(l.tcp)
	if s.Counters.NewFlows < conns+1 || s.Counters.Packets == 0 {
		t.Errorf("service counters %+v", s.Counters)
	}
}

// TestE2EMemberChangesKeepFlows: established VIP connections keep their
// member while members are removed, drained, added and re-addressed.
func TestE2EMemberChangesKeepFlows(t *testing.T) {
	l := newLBNet(t, 5)
	l.setService(t, l.tcp, 8080, l.memberList(1, 2, 3, 4))

	var conns []*namedConn
	for range 24 {
		c, err := dialNamed(l.client.nsHandle, "198.18.2.1:80")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	check := func(step string) {
		t.Helper()
		for i, c := range conns {
			if err := c.roundTrip(step); err != nil {
				t.Fatalf("%s: connection %d (member %s): %v", step, i, c.peer, err)
			}
		}
	}
	check("before")

	// Remove the first connection's member, drain another, add m5.
	gone := conns[0].peer
	var drained string
	var ms []Member
	for i := 1; i <= 5; i++ {
		name := fmt.Sprintf("m%d", i)
		switch {
		case name == gone:
			continue
		case drained == "" && i <= 4:
			drained = name
			ms = append(ms, Member{Addr: l.members[i-1].ip, State: MemberDraining})
		default:
			ms = append(ms, Member{Addr: l.members[i-1].ip})
		}
	}
	l.setService(t, l.tcp, 8080, ms)
	check("after remove/drain/add")
	for i := range 40 {
		c, err := dialNamed(l.client.nsHandle, "198.18.2.1:80")
		if err != nil {
			t.Fatal(err)
		}
		if c.peer == gone || c.peer == drained {
			t.Errorf("new connection %d went to %s (removed %s, draining %s)", i, c.peer, gone, drained)
		}
		c.Close()
	}
}

// TestE2EPinnedRestart: with a pin path the switch keeps forwarding while
// no process holds it, and a new Load takes over the same tables and
// attachments; Destroy removes everything.
func TestE2EPinnedRestart(t *testing.T) {
	n := newTestNet(t)
	client := n.addHost("c", 1, addr("198.18.0.100"), hostMAC(100))
	srv := n.addHost("s", 2, addr("198.18.0.2"), hostMAC(2))

	pin := filepath.Join(t.TempDir(), "bpffs")
	if err := EnsureBPFFS(pin); err != nil {
		t.Fatalf("mount bpffs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(pin, unix.MNT_DETACH) })
	pinDir := filepath.Join(pin, "cflow")

	d1 := loadOrSkip(t, Options{PinPath: pinDir, Netns: n.sw.path()})
	destroyed := false
	t.Cleanup(func() {
		if !destroyed {
			if d, err := Load(Options{PinPath: pinDir, Netns: n.sw.path()}); err == nil {
				_ = d.Destroy()
			}
		}
	})
	placeClientServer(t, d1, client, srv, srv.mac)
	if err := d1.SetFlood(false); err != nil {
		t.Fatal(err)
	}
	serveNamed(t, srv.listenTCP(t, ":7000"), "s")
	c, err := dialNamed(client.nsHandle, "198.18.0.2:7000")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.roundTrip("before"); err != nil {
		t.Fatal(err)
	}
	if err := d1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// No Dataplane exists now: the pinned links keep forwarding.
	for i := range 5 {
		if err := c.roundTrip(fmt.Sprintf("orphan %d", i)); err != nil {
			t.Fatalf("forwarding stopped after Close: %v", err)
		}
	}

	d2, err := Load(Options{PinPath: pinDir, Netns: n.sw.path()})
	if err != nil {
		t.Fatalf("re-Load: %v", err)
	}
	ports, err := d2.Ports()
	if err != nil || len(ports) != 2 || ports[0].Mode != "tcx" || ports[1].Name != "p2" {
		t.Fatalf("ports after re-Load: %+v, %v", ports, err)
	}
	a, err := d2.Address(srv.ip)
	if err != nil || a.Forward == nil || a.Forward.Port != 2 || a.Counters.Packets == 0 {
		t.Fatalf("address after re-Load: %+v, %v", a, err)
	}
	if on, _ := d2.Flood(); on {
		t.Errorf("flood setting not kept across re-Load")
	}
	before := a.Counters.Packets
	for i := range 5 {
		if err := c.roundTrip(fmt.Sprintf("after %d", i)); err != nil {
			t.Fatalf("after re-Load: %v", err)
		}
	}
	if a, _ = d2.Address(srv.ip); a.Counters.Packets <= before {
		t.Errorf("counters did not grow after re-Load: %d -> %d", before, a.Counters.Packets)
	}
	c2, err := dialNamed(client.nsHandle, "198.18.0.2:7000")
	if err != nil {
		t.Fatalf("new connection after re-Load: %v", err)
	}
	c2.Close()
	// The pinned links now run the program of the second Load.
	pinfo, err := d2.objs.SwitchIngress.Info()
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := pinfo.ID()
	for _, p := range ports {
		l := d2.links[p.Number]
		if l == nil {
			t.Fatalf("port %d: link not adopted", p.Number)
		}
		li, err := l.Info()
		if err != nil {
			t.Fatal(err)
		}
		if li.Program != pid {
			t.Errorf("port %d runs program %d, want the re-loaded %d", p.Number, li.Program, pid)
		}
	}

	if err := d2.Destroy(); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	destroyed = true
	if entries, err := os.ReadDir(pinDir); err == nil {
		t.Errorf("pin directory left after Destroy: %v", entries)
	}
	// Nothing forwards any more.
	if c3, err := client.dialTCP("198.18.0.2:7000", 300*time.Millisecond); err == nil {
		c3.Close()
		t.Errorf("connection succeeded after Destroy")
	}
}

// TestE2ETCFallback runs the tc clsact attachment (used where TCX is
// missing) and checks that Close removes its filters.
func TestE2ETCFallback(t *testing.T) {
	n := newTestNet(t)
	client := n.addHost("c", 1, addr("198.18.0.100"), hostMAC(100))
	srv := n.addHost("s", 2, addr("198.18.0.2"), hostMAC(2))
	d := loadOrSkip(t, Options{Attach: AttachTC, Netns: n.sw.path()})
	placeClientServer(t, d, client, srv, nil)
	serveNamed(t, srv.listenTCP(t, ":7000"), "s")
	c, err := dialNamed(client.nsHandle, "198.18.0.2:7000")
	if err != nil {
		t.Fatalf("dial through tc attachment: %v", err)
	}
	if err := c.roundTrip("tc"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	ports, _ := d.Ports()
	if len(ports) != 2 || ports[0].Mode != "tc" {
		t.Errorf("ports %+v", ports)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, name := range []string{"p1", "p2"} {
		l, err := n.sw.nl.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		fs, err := n.sw.nl.FilterList(l, netlink.HANDLE_MIN_INGRESS)
		if err != nil {
			t.Fatal(err)
		}
		if len(fs) != 0 {
			t.Errorf("%s: %d filters left after Close", name, len(fs))
		}
	}
}

func TestAttachPortErrors(t *testing.T) {
	n := newTestNet(t)
	n.addHost("a", 1, addr("198.18.0.1"), hostMAC(1))
	n.addHost("b", 2, addr("198.18.0.2"), hostMAC(2))
	d := n.loadSwitch(Options{}, 1)
	if err := d.AttachPort(1, "p1"); err != nil {
		t.Errorf("re-attaching the same interface: %v, want no-op", err)
	}
	if err := d.AttachPort(1, "p2"); !isErr(err, ErrPortInUse) {
		t.Errorf("port 1 taken: %v", err)
	}
	if err := d.AttachPort(3, "p1"); !isErr(err, ErrPortInUse) {
		t.Errorf("interface p1 taken: %v", err)
	}
	if err := d.AttachPort(3, "nosuch0"); !isErr(err, ErrInvalid) {
		t.Errorf("missing interface: %v", err)
	}
	if err := d.AttachPort(0, "p2"); !isErr(err, ErrInvalid) {
		t.Errorf("port 0: %v", err)
	}
	if err := d.DetachPort(2); !isErr(err, ErrUnknownPort) {
		t.Errorf("detach of an unattached port: %v", err)
	}
	if err := d.DetachPort(1); err != nil {
		t.Fatal(err)
	}
	if ports, _ := d.Ports(); len(ports) != 0 {
		t.Errorf("ports after detach: %+v", ports)
	}
	if err := d.AttachPort(1, "p2"); err != nil {
		t.Errorf("re-use of a detached port: %v", err)
	}
}

// TestE2ETCPinnedRestart: the tc fallback also survives a restart — its
// filters outlive the process — and a re-Load replaces them in place.
func TestE2ETCPinnedRestart(t *testing.T) {
	n := newTestNet(t)
	client := n.addHost("c", 1, addr("198.18.0.100"), hostMAC(100))
	srv := n.addHost("s", 2, addr("198.18.0.2"), hostMAC(2))
	pin := filepath.Join(t.TempDir(), "bpffs")
	if err := EnsureBPFFS(pin); err != nil {
		t.Fatalf("mount bpffs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(pin, unix.MNT_DETACH) })
	opts := Options{PinPath: filepath.Join(pin, "sw"), Netns: n.sw.path(), Attach: AttachTC}

	d1 := loadOrSkip(t, opts)
	placeClientServer(t, d1, client, srv, nil)
	serveNamed(t, srv.listenTCP(t, ":7000"), "s")
	c, err := dialNamed(client.nsHandle, "198.18.0.2:7000")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.roundTrip("orphan"); err != nil {
		t.Fatalf("tc filters stopped forwarding after Close: %v", err)
	}
	d2, err := Load(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.roundTrip("adopted"); err != nil {
		t.Fatalf("after re-Load: %v", err)
	}
	if ports, _ := d2.Ports(); len(ports) != 2 || ports[0].Mode != "tc" {
		t.Errorf("ports after re-Load: %+v", ports)
	}
	if err := d2.Destroy(); err != nil {
		t.Fatal(err)
	}
	l, _ := n.sw.nl.LinkByName("p1")
	if fs, _ := n.sw.nl.FilterList(l, netlink.HANDLE_MIN_INGRESS); len(fs) != 0 {
		t.Errorf("filters left after Destroy: %d", len(fs))
	}
}

// placeClientServer attaches switch ports 1 and 2 and points the client's
// address at port 1 and the server's at port 2 (srvMAC: optional
// destination MAC rewrite for the server).
func placeClientServer(t *testing.T, d *Dataplane, client, srv *testHost, srvMAC net.HardwareAddr) {
	t.Helper()
	for p := uint32(1); p <= 2; p++ {
		if err := d.AttachPort(p, fmt.Sprintf("p%d", p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.MoveAddress(client.ip, 1, nil); err != nil {
		t.Fatal(err)
	}
	if err := d.MoveAddress(srv.ip, 2, srvMAC); err != nil {
		t.Fatal(err)
	}
}
