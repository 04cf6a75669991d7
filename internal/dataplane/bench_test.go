package dataplane

import (
	"net/netip"
	"testing"
)

// BenchmarkMoveAddress measures one address move (forward + arp_forward) as
// the controller performs it: validation plus one map update.
func BenchmarkMoveAddress(b *testing.B) {
	d := newPacketFixture(b)
	ip := netip.MustParseAddr("198.18.0.3")
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := d.MoveAddress(ip, uint32(2+i%2), macC); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSwitchTCP measures the program on a switched TCP packet
// (address lookup, counters, redirect) with BPF_PROG_TEST_RUN; ns/pkt is
// the kernel's per-packet run time.
func BenchmarkSwitchTCP(b *testing.B) {
	benchProg(b, ipPkt{dstMAC: macB, srcMAC: macClient, src: ipClient, dst: ipB, proto: 6,
		sport: 40000, dport: 80, tcpFlags: 0x10}.bytes(), 1000, nil)
}

// BenchmarkVIPTCP measures a client packet of an established VIP flow
// (service + conntrack lookups, DNAT with checksum updates, routing). The
// program rewrites the packet, and a test run with repeats re-uses it, so
// each run is a single repetition.
func BenchmarkVIPTCP(b *testing.B) {
	in := ipPkt{dstMAC: macVIP, srcMAC: macClient, src: ipClient, dst: ipVIP, proto: 6,
		sport: 40000, dport: 80, tcpFlags: 0x10}.bytes()
	benchProg(b, in, 1, func(d *Dataplane) {
		if err := d.SetService(ServiceKey{ipVIP, 80, ProtoTCP}, Member{Addr: memberIP(1), Port: 8080}); err != nil {
			b.Fatal(err)
		}
	})
}

func benchProg(b *testing.B, in []byte, repeat int, setup func(*Dataplane)) {
	d := newPacketFixture(b)
	if setup != nil {
		setup(d)
	}
	b.ResetTimer()
	var total float64
	for b.Loop() {
		ret, dur, err := d.objs.SwitchIngress.Benchmark(in, repeat, nil)
		if err != nil {
			b.Fatal(err)
		}
		if ret != actRedirect {
			b.Fatalf("verdict %d", ret)
		}
		total += float64(dur.Nanoseconds())
	}
	b.ReportMetric(total/float64(b.N), "ns/pkt")
}
