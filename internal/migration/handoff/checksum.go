package handoff

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// fixChecksums rewrites the IPv4 header checksum and the TCP or UDP
// checksum of an Ethernet frame in place. A frame taken on its way in
// from a veth often still has a partial checksum (CHECKSUM_PARTIAL: the
// sender's kernel left the sum to "hardware" that a veth never runs), and
// sent again as a raw frame it would be dropped by the receiver as
// corrupt. Frames that are not IPv4 TCP or UDP are left alone.
func fixChecksums(f []byte) {
	if len(f) < 14+20 || binary.BigEndian.Uint16(f[12:14]) != unix.ETH_P_IP {
		return
	}
	ip := f[14:]
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:4]))
	if ihl < 20 || total < ihl || total > len(ip) {
		return
	}
	ip = ip[:total]
	// Fragments other than the first carry no L4 header.
	if binary.BigEndian.Uint16(ip[6:8])&0x1fff != 0 {
		return
	}
	binary.BigEndian.PutUint16(ip[10:12], 0)
	binary.BigEndian.PutUint16(ip[10:12], ^fold(sum(ip[:ihl], 0)))
	l4 := ip[ihl:]
	var off int
	switch ip[9] {
	case unix.IPPROTO_TCP:
		off = 16
	case unix.IPPROTO_UDP:
		off = 6
	default:
		return
	}
	if len(l4) < off+2 || ip[6]&0x20 != 0 { // too short, or more fragments follow
		return
	}
	binary.BigEndian.PutUint16(l4[off:off+2], 0)
	pseudo := sum(ip[12:20], 0) + uint32(ip[9]) + uint32(len(l4))
	c := ^fold(sum(l4, pseudo))
	if c == 0 && ip[9] == unix.IPPROTO_UDP {
		c = 0xffff // 0 means "no checksum" in UDP
	}
	binary.BigEndian.PutUint16(l4[off:off+2], c)
}

func sum(b []byte, s uint32) uint32 {
	for len(b) >= 2 {
		s += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
