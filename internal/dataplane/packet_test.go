package dataplane

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
)

// Packet tests: frames through the real program with BPF_PROG_TEST_RUN, no
// namespaces. Frames "arrive" on lo, which the fixture makes switch port 1;
// ports 2-4 point at made-up ifindexes, which a redirect does not need to
// exist (the test run only reports the verdict).

const (
	actOK       = 0
	actShot     = 2 // TC_ACT_SHOT
	actRedirect = 7 // TC_ACT_REDIRECT
)

var (
	macClient = mustMAC("02:00:00:00:00:01")
	macSwitch = mustMAC("02:00:00:00:ff:ff") // what hosts address routed frames to
	macB      = mustMAC("02:00:00:00:00:02")
	macC      = mustMAC("02:00:00:00:00:03")
	macVIP    = mustMAC("02:00:00:00:00:fe")

	ipClient = netip.MustParseAddr("198.18.0.1") // port 1 (lo)
	ipB      = netip.MustParseAddr("198.18.0.2") // port 2, switched (no MAC rewrite)
	ipC      = netip.MustParseAddr("198.18.0.3") // port 3, routed (MAC rewrite)
	ipVIP    = netip.MustParseAddr("198.18.2.1") // proxy ARP only
	ipNone   = netip.MustParseAddr("198.18.0.99")
)

func memberIP(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 1, byte(i)}) }
func memberMAC(i int) net.HardwareAddr {
	return net.HardwareAddr{0x02, 0, 0, 0, 1, byte(i)}
}

// newPacketFixture loads a fresh switch with ports 1-4 and a few addresses:
// client, B (switched), C (routed), a VIP answered by proxy ARP, and eight
// member addresses on ports 2-4 (routed).
func newPacketFixture(t testing.TB) *Dataplane {
	t.Helper()
	d := loadOrSkip(t, Options{})
	setPortForTest(t, d, 1, loIndex(t))
	for p := uint32(2); p <= 4; p++ {
		setPortForTest(t, d, p, 1000+p)
	}
	set := func(ip netip.Addr, e AddressEntry) {
		t.Helper()
		if err := d.SetAddress(ip, e); err != nil {
			t.Fatal(err)
		}
	}
	set(ipClient, AddressEntry{Forward: &Forward{Port: 1}, ARP: &ARP{Port: 1}})
	set(ipB, AddressEntry{Forward: &Forward{Port: 2}, ARP: &ARP{Port: 2}})
	set(ipC, AddressEntry{Forward: &Forward{Port: 3, DstMAC: macC}, ARP: &ARP{Port: 3}})
	set(ipVIP, AddressEntry{ARP: &ARP{ReplyMAC: macVIP}})
	for i := 1; i <= 8; i++ {
		set(memberIP(i), AddressEntry{Forward: &Forward{Port: uint32(2 + i%3), DstMAC: memberMAC(i)}})
	}
	return d
}

func delta(before, after map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range after {
		if v != before[k] {
			out[k] = v - before[k]
		}
	}
	return out
}

func TestPackets(t *testing.T) {
	requireRoot(t)
	tcpTo := func(dst netip.Addr, mac net.HardwareAddr) ipPkt {
		return ipPkt{dstMAC: mac, srcMAC: macClient, src: ipClient, dst: dst, proto: 6,
			sport: 40000, dport: 80, tcpFlags: 0x02, payload: []byte("hello")}
	}
	ttl1 := func(p ipPkt) ipPkt { p.ttl = 1; return p }
	withOpts := func(p ipPkt) ipPkt { p.options = []byte{1, 1, 1, 0}; return p } // NOP NOP NOP EOL
	frag := func(p ipPkt) ipPkt { p.fragField = 0x2000; return p }               // MF, offset 0

	type tc struct {
		name     string
		setup    func(t *testing.T, d *Dataplane)
		in       []byte
		want     uint32
		txPort   uint32            // port whose tx counter must rise (0: none)
		counters map[string]uint64 // exact deltas of global counters
		check    func(t *testing.T, in, out []byte)
	}
	same := func(t *testing.T, in, out []byte) {
		if !bytes.Equal(in, out) {
			t.Errorf("frame changed:\n in % x\nout % x", in, out)
		}
	}
	routed := func(wantMAC net.HardwareAddr) func(t *testing.T, in, out []byte) {
		return func(t *testing.T, in, out []byte) {
			pi, po := parseIP(t, in), parseIP(t, out)
			if !bytes.Equal(po.dstMAC, wantMAC) {
				t.Errorf("dst MAC %s, want %s", po.dstMAC, wantMAC)
			}
			if po.ttl != pi.ttl-1 {
				t.Errorf("TTL %d, want %d", po.ttl, pi.ttl-1)
			}
			if po.src != pi.src || po.dst != pi.dst || po.sport != pi.sport || po.dport != pi.dport ||
				!bytes.Equal(po.payload, pi.payload) || !bytes.Equal(po.srcMAC, pi.srcMAC) {
				t.Errorf("more than MAC and TTL changed:\n in % x\nout % x", in, out)
			}
		}
	}

	cases := []tc{
		{name: "ipv4 switched unchanged", in: tcpTo(ipB, macB).bytes(), want: actRedirect, txPort: 2,
			counters: map[string]uint64{"switched": 1}, check: same},
		{name: "ipv4 routed rewrites MAC and TTL", in: tcpTo(ipC, macSwitch).bytes(), want: actRedirect, txPort: 3,
			counters: map[string]uint64{"routed": 1}, check: routed(macC)},
		{name: "ipv4 options routed", in: withOpts(tcpTo(ipC, macSwitch)).bytes(), want: actRedirect, txPort: 3,
			counters: map[string]uint64{"routed": 1}, check: routed(macC)},
		{name: "udp routed", in: ipPkt{dstMAC: macSwitch, srcMAC: macClient, src: ipClient, dst: ipC, proto: 17,
			sport: 5000, dport: 53, payload: []byte("q")}.bytes(), want: actRedirect, txPort: 3,
			counters: map[string]uint64{"routed": 1}, check: routed(macC)},
		{name: "icmp echo routed", in: ipPkt{dstMAC: macSwitch, srcMAC: macClient, src: ipClient, dst: ipC, proto: 1,
			icmpType: 8, icmpID: 7, payload: []byte("ping")}.bytes(), want: actRedirect, txPort: 3,
			counters: map[string]uint64{"routed": 1}, check: routed(macC)},
		{name: "ttl 1 routed is dropped", in: ttl1(tcpTo(ipC, macSwitch)).bytes(), want: actShot,
			counters: map[string]uint64{"ttl_exceeded": 1}},
		{name: "ttl 1 switched passes untouched", in: ttl1(tcpTo(ipB, macB)).bytes(), want: actRedirect, txPort: 2,
			counters: map[string]uint64{"switched": 1}, check: same},
		{name: "unknown destination dropped", in: tcpTo(ipNone, macB).bytes(), want: actShot,
			counters: map[string]uint64{"no_route": 1}},
		{name: "ipv6 dropped", in: append(eth(macB, macClient, etherIPv6), make([]byte, 40)...), want: actShot,
			counters: map[string]uint64{"non_ip": 1}},
		{name: "runt frame dropped", in: make([]byte, 14), want: actShot,
			counters: map[string]uint64{"non_ip": 1}},
		{name: "truncated tcp header dropped", in: tcpTo(ipB, macB).bytes()[:40], want: actShot,
			counters: map[string]uint64{"malformed": 1}},
		{name: "bad ipv4 version dropped", in: func() []byte {
			b := tcpTo(ipB, macB).bytes()
			b[14] = 0x65
			return b
		}(), want: actShot, counters: map[string]uint64{"malformed": 1}},
		{name: "fragment forwarded unchanged", in: frag(tcpTo(ipB, macB)).bytes(), want: actRedirect, txPort: 2,
			counters: map[string]uint64{"fragments": 1, "switched": 1}, check: same},
		{name: "fragment to VIP dropped", in: frag(tcpTo(ipVIP, macVIP)).bytes(), want: actShot,
			setup: func(t *testing.T, d *Dataplane) {
				mustSetService(t, d, ServiceKey{ipVIP, 80, ProtoTCP}, Member{Addr: memberIP(1)})
			},
			counters: map[string]uint64{"fragments": 1, "no_route": 1}},
		{name: "arp request forwarded by target", in: arpFrame(1, broadcast, macClient, ipClient, nil, ipB),
			want: actRedirect, txPort: 2, counters: map[string]uint64{"arp_forwarded": 1}, check: same},
		{name: "arp reply forwarded by target", in: arpFrame(2, macB, macClient, ipClient, macB, ipB),
			want: actRedirect, txPort: 2, counters: map[string]uint64{"arp_forwarded": 1}, check: same},
		{name: "arp for unknown target flooded", in: arpFrame(1, broadcast, macClient, ipClient, nil, ipNone),
			// The fixture's ports 2-4 have made-up ifindexes, so each
			// clone fails (counted); the namespace tests flood for real.
			want: actShot, counters: map[string]uint64{"arp_flooded": 1, "flood_failed": 3}},
		{name: "gratuitous arp of own port flooded", in: arpFrame(1, broadcast, macClient, ipClient, nil, ipClient),
			want: actShot, counters: map[string]uint64{"arp_flooded": 1, "flood_failed": 3}},
		{name: "arp for unknown target, flooding off", in: arpFrame(1, broadcast, macClient, ipClient, nil, ipNone),
			setup: func(t *testing.T, d *Dataplane) {
				if err := d.SetFlood(false); err != nil {
					t.Fatal(err)
				}
			},
			want: actShot, counters: map[string]uint64{"arp_no_route": 1}},
		{name: "arp for VIP answered by the switch", in: arpFrame(1, broadcast, macClient, ipClient, nil, ipVIP),
			want: actRedirect, txPort: 1, counters: map[string]uint64{"arp_replied": 1},
			check: func(t *testing.T, in, out []byte) {
				want := arpFrame(2, macClient, macVIP, ipVIP, macClient, ipClient)
				if !bytes.Equal(out, want) {
					t.Errorf("arp reply:\n got % x\nwant % x", out, want)
				}
			}},
		{name: "malformed arp dropped", in: arpFrame(1, broadcast, macClient, ipClient, nil, ipB)[:20], want: actShot,
			counters: map[string]uint64{"malformed": 1}},
		{name: "egress port not attached", in: tcpTo(memberIP(1), macSwitch).bytes(), want: actShot,
			setup: func(t *testing.T, d *Dataplane) {
				// memberIP(1) forwards to port 3; unplug it behind the
				// API's back, as DetachPort would.
				if err := d.objs.Ports.Put(uint32(3), bpfPortInfo{}); err != nil {
					t.Fatal(err)
				}
			},
			counters: map[string]uint64{"port_down": 1}},
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := newPacketFixture(t)
			if c.setup != nil {
				c.setup(t, d)
			}
			before := globals(t, d)
			rx1 := portCounters(t, d, 1)
			var tx0 PortCounters
			if c.txPort != 0 {
				tx0 = portCounters(t, d, c.txPort)
			}

			got, out := runProg(t, d, c.in)
			if got != c.want {
				t.Fatalf("verdict %d, want %d (counters %v)", got, c.want, delta(before, globals(t, d)))
			}
			if c.check != nil {
				c.check(t, c.in, out)
			}
			if d := delta(before, globals(t, d)); fmt.Sprint(d) != fmt.Sprint(c.counters) {
				t.Errorf("counter deltas %v, want %v", d, c.counters)
			}
			rx := portCounters(t, d, 1)
			if rx.RxPackets != rx1.RxPackets+1 || rx.RxBytes != rx1.RxBytes+uint64(len(c.in)) {
				t.Errorf("port 1 rx %+v, want one more frame of %d bytes than %+v", rx, len(c.in), rx1)
			}
			wantDrop := rx1.RxDropped
			if c.want == actShot && c.counters["arp_flooded"] == 0 {
				wantDrop++
			}
			if rx.RxDropped != wantDrop {
				t.Errorf("port 1 rx_dropped %d, want %d", rx.RxDropped, wantDrop)
			}
			if c.txPort != 0 {
				if tx := portCounters(t, d, c.txPort); tx.TxPackets != tx0.TxPackets+1 {
					t.Errorf("port %d tx_packets %d, want %d", c.txPort, tx.TxPackets, tx0.TxPackets+1)
				}
			}
		})
	}
}

var broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

func mustSetService(t *testing.T, d *Dataplane, k ServiceKey, m ...Member) {
	t.Helper()
	if err := d.SetService(k, m...); err != nil {
		t.Fatalf("SetService: %v", err)
	}
}

func TestAddressCounters(t *testing.T) {
	d := newPacketFixture(t)
	in := ipPkt{dstMAC: macSwitch, srcMAC: macClient, src: ipClient, dst: ipC, proto: 17, sport: 1, dport: 2}.bytes()
	for range 3 {
		if v, _ := runProg(t, d, in); v != actRedirect {
			t.Fatalf("verdict %d", v)
		}
	}
	runProg(t, d, arpFrame(1, broadcast, macClient, ipClient, nil, ipC))
	a, err := d.Address(ipC)
	if err != nil {
		t.Fatal(err)
	}
	if a.Counters.Packets != 3 || a.Counters.Bytes != 3*uint64(len(in)) || a.Counters.ARPPackets != 1 {
		t.Errorf("counters %+v, want 3 packets of %d bytes and 1 ARP", a.Counters, len(in))
	}
	// A move keeps the counters (they belong to the address)...
	if err := d.MoveAddress(ipC, 2, macC); err != nil {
		t.Fatal(err)
	}
	if a, _ = d.Address(ipC); a.Counters.Packets != 3 {
		t.Errorf("after move: counters %+v, want them kept", a.Counters)
	}
	// ...and packets follow the move at once.
	tx2 := portCounters(t, d, 2)
	runProg(t, d, in)
	if tx := portCounters(t, d, 2); tx.TxPackets != tx2.TxPackets+1 {
		t.Errorf("after move: port 2 tx %d, want %d", tx.TxPackets, tx2.TxPackets+1)
	}
	// Deleting restarts them.
	if err := d.DeleteAddress(ipC); err != nil {
		t.Fatal(err)
	}
	if err := d.SetForward(ipC, Forward{Port: 3}); err != nil {
		t.Fatal(err)
	}
	if a, _ = d.Address(ipC); a.Counters != (AddressCounters{}) || a.ARP != nil {
		t.Errorf("re-created entry %+v, want fresh counters and no arp view", a)
	}
}

// lbFixture is a packet fixture with a TCP service VIP:80 -> members
// 1..4 at port 8080.
func lbFixture(t *testing.T) (*Dataplane, ServiceKey) {
	d := newPacketFixture(t)
	k := ServiceKey{VIP: ipVIP, Port: 80, Proto: ProtoTCP}
	var ms []Member
	for i := 1; i <= 4; i++ {
		ms = append(ms, Member{Addr: memberIP(i), Port: 8080})
	}
	mustSetService(t, d, k, ms...)
	return d, k
}

func memberIndex(a netip.Addr) int {
	b := a.As4()
	if b[0] != 198 || b[1] != 18 || b[2] != 1 {
		return -1
	}
	return int(b[3])
}

// sendSYN sends a client packet of the flow client:sport -> VIP:80 and
// returns the member it was DNATed to, checking the rewrite on the way.
func sendToVIP(t *testing.T, d *Dataplane, client netip.Addr, sport uint16) int {
	t.Helper()
	in := ipPkt{dstMAC: macVIP, srcMAC: macClient, src: client, dst: ipVIP, proto: 6,
		sport: sport, dport: 80, tcpFlags: 0x02, payload: []byte("GET /")}.bytes()
	v, out := runProg(t, d, in)
	if v != actRedirect {
		t.Fatalf("flow %s:%d: verdict %d (counters %v)", client, sport, v, globals(t, d))
	}
	p := parseIP(t, out) // checks IPv4 and TCP checksums
	m := memberIndex(p.dst)
	if m < 1 {
		t.Fatalf("DNAT to %s, not a member", p.dst)
	}
	if p.dport != 8080 || p.sport != sport || p.src != client || !bytes.Equal(p.dstMAC, memberMAC(m)) ||
		p.ttl != 63 || string(p.payload) != "GET /" {
		t.Fatalf("bad DNAT: %+v", p)
	}
	return m
}

func TestLBConntrackKeepsMember(t *testing.T) {
	d, k := lbFixture(t)
	m := sendToVIP(t, d, ipClient, 40000)
	for range 3 {
		if again := sendToVIP(t, d, ipClient, 40000); again != m {
			t.Fatalf("same flow went to member %d, then %d", m, again)
		}
	}

	// Drain the flow's member and add two: the flow stays, new flows avoid
	// the draining member.
	if err := d.SetMemberState(k, memberIP(m), MemberDraining); err != nil {
		t.Fatal(err)
	}
	svc, _ := d.Service(k)
	mustSetService(t, d, k, append(svc.Members, Member{Addr: memberIP(5), Port: 8080}, Member{Addr: memberIP(6), Port: 8080})...)
	if again := sendToVIP(t, d, ipClient, 40000); again != m {
		t.Fatalf("after drain+add: flow moved from member %d to %d", m, again)
	}
	for sport := uint16(1); sport <= 200; sport++ {
		if got := sendToVIP(t, d, ipClient, sport); got == m {
			t.Fatalf("new flow %d went to draining member %d", sport, m)
		}
	}

	// Remove it altogether: the flow still keeps it.
	var rest []Member
	for _, mem := range svc.Members {
		if mem.Addr != memberIP(m) {
			rest = append(rest, mem)
		}
	}
	mustSetService(t, d, k, rest...)
	if again := sendToVIP(t, d, ipClient, 40000); again != m {
		t.Fatalf("after removal: flow moved from member %d to %d", m, again)
	}

	flows, err := d.Conntrack()
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, f := range flows {
		if f.Client == netip.AddrPortFrom(ipClient, 40000) {
			found = true
			if f.Member != netip.AddrPortFrom(memberIP(m), 8080) || f.VIP != netip.AddrPortFrom(ipVIP, 80) ||
				f.Packets != 6 || f.Proto != ProtoTCP {
				t.Errorf("flow %+v, want member %d, 6 packets", f, m)
			}
		}
	}
	if !found || len(flows) != 201 {
		t.Errorf("conntrack has %d flows (found=%v), want 201", len(flows), found)
	}
}

func TestLBReplySNATOnlyForVIPFlows(t *testing.T) {
	d, _ := lbFixture(t)
	m := sendToVIP(t, d, ipClient, 40000)
	before := globals(t, d)

	reply := func(sport, dport uint16) []byte {
		return ipPkt{dstMAC: macClient, srcMAC: memberMAC(m), src: memberIP(m), dst: ipClient, proto: 6,
			sport: sport, dport: dport, tcpFlags: 0x12, payload: []byte("200 OK")}.bytes()
	}

	// The member's reply on the VIP flow leaves as the VIP.
	v, out := runProg(t, d, reply(8080, 40000))
	if v != actRedirect {
		t.Fatalf("verdict %d", v)
	}
	p := parseIP(t, out)
	if p.src != ipVIP || p.sport != 80 || p.dst != ipClient || p.dport != 40000 || string(p.payload) != "200 OK" {
		t.Errorf("reply not SNATed to the VIP: %+v", p)
	}

	// The same member talking to the same client on a direct flow (the
	// client connected to the member's own address) is left alone.
	direct := reply(8080, 40001)
	v, out = runProg(t, d, direct)
	if v != actRedirect || !bytes.Equal(out, direct) {
		t.Errorf("direct reply rewritten (verdict %d):\n in % x\nout % x", v, direct, out)
	}
	// And so is the client's direct packet to the member.
	toMember := ipPkt{dstMAC: macSwitch, srcMAC: macClient, src: ipClient, dst: memberIP(m), proto: 6,
		sport: 40001, dport: 8080, tcpFlags: 0x02}.bytes()
	v, out = runProg(t, d, toMember)
	if p := parseIP(t, out); v != actRedirect || p.dst != memberIP(m) || p.dport != 8080 || p.src != ipClient {
		t.Errorf("direct request rewritten (verdict %d): %+v", v, p)
	}
	if got := delta(before, globals(t, d)); got["lb_snat"] != 1 || got["lb_dnat"] != 0 {
		t.Errorf("counter deltas %v, want exactly one SNAT and no DNAT", got)
	}
}

func TestLBUDPChecksums(t *testing.T) {
	d := newPacketFixture(t)
	k := ServiceKey{VIP: ipVIP, Port: 53, Proto: ProtoUDP}
	mustSetService(t, d, k, Member{Addr: memberIP(1), Port: 5353})
	for _, zero := range []bool{false, true} {
		t.Run(fmt.Sprintf("zero_csum=%v", zero), func(t *testing.T) {
			sport := uint16(1000)
			if zero {
				sport = 1001
			}
			in := ipPkt{dstMAC: macVIP, srcMAC: macClient, src: ipClient, dst: ipVIP, proto: 17,
				sport: sport, dport: 53, payload: []byte("query"), udpNoCsum: zero}.bytes()
			v, out := runProg(t, d, in)
			p := parseIP(t, out)
			if v != actRedirect || p.dst != memberIP(1) || p.dport != 5353 {
				t.Fatalf("verdict %d, DNAT %+v", v, p)
			}
			if zero != (p.udpCsum == 0) {
				t.Errorf("UDP checksum %#04x, want zero=%v", p.udpCsum, zero)
			}
			rep := ipPkt{dstMAC: macClient, srcMAC: memberMAC(1), src: memberIP(1), dst: ipClient, proto: 17,
				sport: 5353, dport: sport, payload: []byte("answer"), udpNoCsum: zero}.bytes()
			v, out = runProg(t, d, rep)
			p = parseIP(t, out)
			if v != actRedirect || p.src != ipVIP || p.sport != 53 {
				t.Fatalf("verdict %d, SNAT %+v", v, p)
			}
			if zero != (p.udpCsum == 0) {
				t.Errorf("reply UDP checksum %#04x, want zero=%v", p.udpCsum, zero)
			}
		})
	}
}

func TestLBICMPEcho(t *testing.T) {
	d := newPacketFixture(t)
	mustSetService(t, d, ServiceKey{VIP: ipVIP, Proto: ProtoICMP}, Member{Addr: memberIP(2)})
	req := ipPkt{dstMAC: macVIP, srcMAC: macClient, src: ipClient, dst: ipVIP, proto: 1,
		icmpType: 8, icmpID: 77, payload: []byte("ping")}.bytes()
	v, out := runProg(t, d, req)
	p := parseIP(t, out)
	if v != actRedirect || p.dst != memberIP(2) || p.icmpType != 8 || p.sport != 77 {
		t.Fatalf("verdict %d, echo request %+v", v, p)
	}
	rep := ipPkt{dstMAC: macClient, srcMAC: memberMAC(2), src: memberIP(2), dst: ipClient, proto: 1,
		icmpType: 0, icmpID: 77, payload: []byte("ping")}.bytes()
	v, out = runProg(t, d, rep)
	p = parseIP(t, out)
	if v != actRedirect || p.src != ipVIP || p.icmpType != 0 {
		t.Fatalf("verdict %d, echo reply %+v", v, p)
	}
	// A reply with another id belongs to no VIP flow.
	other := ipPkt{dstMAC: macClient, srcMAC: memberMAC(2), src: memberIP(2), dst: ipClient, proto: 1,
		icmpType: 0, icmpID: 78}.bytes()
	if _, out = runProg(t, d, other); parseIP(t, out).src != memberIP(2) {
		t.Errorf("echo reply of a direct ping was rewritten")
	}
}

func TestLBNoActiveMember(t *testing.T) {
	d := newPacketFixture(t)
	mustSetService(t, d, ServiceKey{VIP: ipVIP, Port: 80, Proto: ProtoTCP},
		Member{Addr: memberIP(1), State: MemberDraining})
	before := globals(t, d)
	in := ipPkt{dstMAC: macVIP, srcMAC: macClient, src: ipClient, dst: ipVIP, proto: 6, sport: 1, dport: 80}.bytes()
	if v, _ := runProg(t, d, in); v != actShot {
		t.Fatalf("verdict %d, want drop", v)
	}
	if got := delta(before, globals(t, d)); got["lb_no_member"] != 1 {
		t.Errorf("counter deltas %v, want lb_no_member 1", got)
	}
}

// TestLBDistribution checks the rendezvous hash: an even spread over the
// members, and adding a member moves only the flows it wins.
func TestLBDistribution(t *testing.T) {
	d, k := lbFixture(t)
	const flows = 4000
	rng := rand.New(rand.NewPCG(1, 2))
	type flow struct {
		client netip.Addr
		sport  uint16
	}
	fs := make([]flow, flows)
	for i := range fs {
		fs[i] = flow{netip.AddrFrom4([4]byte{198, 18, 3, byte(rng.IntN(250) + 1)}), uint16(rng.IntN(60000) + 1024)}
	}
	first := make([]int, flows)
	count := map[int]int{}
	for i, f := range fs {
		first[i] = sendToVIP(t, d, f.client, f.sport)
		count[first[i]]++
	}
	for m := 1; m <= 4; m++ {
		share := float64(count[m]) / (flows / 4)
		if share < 0.85 || share > 1.15 {
			t.Errorf("member %d got %d of %d flows (%.2f of its fair share); all: %v", m, count[m], flows, share, count)
		}
	}

	// Forget the flows, add a fifth member and replay: a flow either keeps
	// its member or moves to the new one, and about a fifth move.
	if _, err := d.DeleteFlows(func(Flow) bool { return true }); err != nil {
		t.Fatal(err)
	}
	svc, _ := d.Service(k)
	mustSetService(t, d, k, append(svc.Members, Member{Addr: memberIP(5), Port: 8080})...)
	moved := 0
	for i, f := range fs {
		m := sendToVIP(t, d, f.client, f.sport)
		if m != first[i] {
			if m != 5 {
				t.Fatalf("flow %d moved from member %d to %d, not to the new member", i, first[i], m)
			}
			moved++
		}
	}
	if share := float64(moved) / (flows / 5); share < 0.85 || share > 1.15 {
		t.Errorf("%d of %d flows moved to the new member, want about %d", moved, flows, flows/5)
	}
}

func TestReaddressMember(t *testing.T) {
	d, k := lbFixture(t)
	m := sendToVIP(t, d, ipClient, 40000)
	newAddr := memberIP(8) // has a forward entry in the fixture
	if err := d.ReaddressMember(memberIP(m), newAddr); err != nil {
		t.Fatal(err)
	}
	if got := sendToVIP(t, d, ipClient, 40000); got != 8 {
		t.Fatalf("after readdress the flow goes to member %d, want 8", got)
	}
	rep := func(src netip.Addr) parsedIP {
		in := ipPkt{dstMAC: macClient, srcMAC: memberMAC(8), src: src, dst: ipClient, proto: 6,
			sport: 8080, dport: 40000, tcpFlags: 0x10}.bytes()
		_, out := runProg(t, d, in)
		return parseIP(t, out)
	}
	if p := rep(newAddr); p.src != ipVIP || p.sport != 80 {
		t.Errorf("reply from the new address not SNATed: %+v", p)
	}
	if p := rep(memberIP(m)); p.src != memberIP(m) {
		t.Errorf("reply from the old address still SNATed: %+v", p)
	}
	svc, err := d.Service(k)
	if err != nil {
		t.Fatal(err)
	}
	var has bool
	for _, mem := range svc.Members {
		if mem.Addr == memberIP(m) {
			t.Errorf("service still lists the old address: %+v", svc.Members)
		}
		has = has || mem.Addr == newAddr
	}
	if !has {
		t.Errorf("service lacks the new address: %+v", svc.Members)
	}
	if err := d.ReaddressMember(netip.MustParseAddr("198.18.9.9"), newAddr); !errors.Is(err, ErrNotFound) {
		t.Errorf("readdress of an unknown member: %v, want ErrNotFound", err)
	}
}

func TestDeleteServiceRemovesFlows(t *testing.T) {
	d, k := lbFixture(t)
	m := sendToVIP(t, d, ipClient, 40000)
	if err := d.DeleteService(k); err != nil {
		t.Fatal(err)
	}
	if flows, _ := d.Conntrack(); len(flows) != 0 {
		t.Errorf("flows left after DeleteService: %+v", flows)
	}
	in := ipPkt{dstMAC: macClient, srcMAC: memberMAC(m), src: memberIP(m), dst: ipClient, proto: 6,
		sport: 8080, dport: 40000}.bytes()
	if _, out := runProg(t, d, in); !bytes.Equal(in, out) {
		t.Errorf("reply still rewritten after DeleteService")
	}
}
