package dataplane

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
)

// Small hand-written frame builders and parsers for the packet tests; they
// compute every checksum from scratch so the tests can tell a correct
// incremental update from a wrong one.

const (
	etherIPv4 = 0x0800
	etherARP  = 0x0806
	etherIPv6 = 0x86dd
)

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// csum16 is the Internet checksum's one's-complement sum, folded.
func csum16(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = (sum >> 16) + (sum & 0xffff)
	}
	return sum
}

func finish(sum uint32) uint16 { return ^uint16(csum16(sum, nil)) }

func pseudoSum(src, dst netip.Addr, proto uint8, l4len int) uint32 {
	s, d := src.As4(), dst.As4()
	var ph [12]byte
	copy(ph[0:], s[:])
	copy(ph[4:], d[:])
	ph[9] = proto
	binary.BigEndian.PutUint16(ph[10:], uint16(l4len))
	return csum16(0, ph[:])
}

// ipPkt describes an Ethernet + IPv4 frame to build.
type ipPkt struct {
	dstMAC, srcMAC net.HardwareAddr
	src, dst       netip.Addr
	ttl            uint8 // 0 means 64
	proto          uint8
	sport, dport   uint16 // TCP/UDP ports
	icmpType       uint8
	icmpID         uint16
	payload        []byte
	options        []byte // IPv4 options, multiple of 4 bytes
	fragField      uint16 // raw flags+offset field
	udpNoCsum      bool   // send UDP with checksum 0
	tcpFlags       uint8
}

func (p ipPkt) bytes() []byte {
	var l4 []byte
	switch p.proto {
	case 6:
		l4 = make([]byte, 20+len(p.payload))
		binary.BigEndian.PutUint16(l4[0:], p.sport)
		binary.BigEndian.PutUint16(l4[2:], p.dport)
		binary.BigEndian.PutUint32(l4[4:], 1000) // seq
		l4[12] = 5 << 4
		l4[13] = p.tcpFlags
		binary.BigEndian.PutUint16(l4[14:], 65535)
		copy(l4[20:], p.payload)
		binary.BigEndian.PutUint16(l4[16:], finish(csum16(pseudoSum(p.src, p.dst, 6, len(l4)), l4)))
	case 17:
		l4 = make([]byte, 8+len(p.payload))
		binary.BigEndian.PutUint16(l4[0:], p.sport)
		binary.BigEndian.PutUint16(l4[2:], p.dport)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		copy(l4[8:], p.payload)
		if !p.udpNoCsum {
			c := finish(csum16(pseudoSum(p.src, p.dst, 17, len(l4)), l4))
			if c == 0 {
				c = 0xffff
			}
			binary.BigEndian.PutUint16(l4[6:], c)
		}
	case 1:
		l4 = make([]byte, 8+len(p.payload))
		l4[0] = p.icmpType
		binary.BigEndian.PutUint16(l4[4:], p.icmpID)
		binary.BigEndian.PutUint16(l4[6:], 1) // seq
		copy(l4[8:], p.payload)
		binary.BigEndian.PutUint16(l4[2:], finish(csum16(0, l4)))
	default:
		l4 = append([]byte(nil), p.payload...)
	}

	ihl := 20 + len(p.options)
	ip := make([]byte, ihl)
	ip[0] = 0x40 | byte(ihl/4)
	binary.BigEndian.PutUint16(ip[2:], uint16(ihl+len(l4)))
	binary.BigEndian.PutUint16(ip[4:], 0x1234)
	binary.BigEndian.PutUint16(ip[6:], p.fragField)
	ip[8] = p.ttl
	if ip[8] == 0 {
		ip[8] = 64
	}
	ip[9] = p.proto
	s, d := p.src.As4(), p.dst.As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	copy(ip[20:], p.options)
	binary.BigEndian.PutUint16(ip[10:], finish(csum16(0, ip)))

	return append(append(eth(p.dstMAC, p.srcMAC, etherIPv4), ip...), l4...)
}

func eth(dst, src net.HardwareAddr, etype uint16) []byte {
	b := make([]byte, 14)
	copy(b[0:], dst)
	copy(b[6:], src)
	binary.BigEndian.PutUint16(b[12:], etype)
	return b
}

func arpFrame(op uint16, ethDst, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	a := make([]byte, 28)
	binary.BigEndian.PutUint16(a[0:], 1)
	binary.BigEndian.PutUint16(a[2:], etherIPv4)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:], op)
	copy(a[8:], sha)
	s, t := spa.As4(), tpa.As4()
	copy(a[14:], s[:])
	copy(a[18:], tha)
	copy(a[24:], t[:])
	// Ethernet minimum frame: pad to 60 bytes like a real NIC would.
	f := append(eth(ethDst, sha, etherARP), a...)
	return append(f, make([]byte, 60-len(f))...)
}

// parsedIP is what the tests check of an output frame.
type parsedIP struct {
	dstMAC, srcMAC net.HardwareAddr
	src, dst       netip.Addr
	ttl, proto     uint8
	sport, dport   uint16 // TCP/UDP ports; ICMP: id in sport
	icmpType       uint8
	udpCsum        uint16
	payload        []byte
}

// parseIP parses an Ethernet + IPv4 frame and fails the test if the IPv4
// checksum or (for unfragmented TCP, UDP and ICMP) the L4 checksum is wrong.
func parseIP(t *testing.T, f []byte) parsedIP {
	t.Helper()
	if len(f) < 34 || binary.BigEndian.Uint16(f[12:]) != etherIPv4 {
		t.Fatalf("not an IPv4 frame: % x", f)
	}
	var p parsedIP
	p.dstMAC = net.HardwareAddr(f[0:6])
	p.srcMAC = net.HardwareAddr(f[6:12])
	ip := f[14:]
	ihl := int(ip[0]&0x0f) * 4
	if got := csum16(0, ip[:ihl]); got != 0xffff {
		t.Fatalf("bad IPv4 header checksum (sum %#04x) in % x", got, ip[:ihl])
	}
	p.ttl, p.proto = ip[8], ip[9]
	p.src = netip.AddrFrom4([4]byte(ip[12:16]))
	p.dst = netip.AddrFrom4([4]byte(ip[16:20]))
	tot := int(binary.BigEndian.Uint16(ip[2:]))
	l4 := ip[ihl:tot]
	if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
		p.payload = l4
		return p
	}
	switch p.proto {
	case 6:
		p.sport = binary.BigEndian.Uint16(l4[0:])
		p.dport = binary.BigEndian.Uint16(l4[2:])
		if got := csum16(pseudoSum(p.src, p.dst, 6, len(l4)), l4); got != 0xffff {
			t.Fatalf("bad TCP checksum (sum %#04x)", got)
		}
		p.payload = l4[20:]
	case 17:
		p.sport = binary.BigEndian.Uint16(l4[0:])
		p.dport = binary.BigEndian.Uint16(l4[2:])
		p.udpCsum = binary.BigEndian.Uint16(l4[6:])
		if p.udpCsum != 0 {
			if got := csum16(pseudoSum(p.src, p.dst, 17, len(l4)), l4); got != 0xffff {
				t.Fatalf("bad UDP checksum (sum %#04x)", got)
			}
		}
		p.payload = l4[8:]
	case 1:
		p.icmpType = l4[0]
		p.sport = binary.BigEndian.Uint16(l4[4:])
		if got := csum16(0, l4); got != 0xffff {
			t.Fatalf("bad ICMP checksum (sum %#04x)", got)
		}
		p.payload = l4[8:]
	}
	return p
}
