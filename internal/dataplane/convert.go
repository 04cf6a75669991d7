package dataplane

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
)

// The BPF tables keep addresses and ports in network byte order, exactly as
// they sit in packets. The generated Go structs see them as native-endian
// integers, so a key is the native reading of the network bytes.

// addrKey returns the table form of an IPv4 address (IPv4-mapped IPv6 is
// accepted and unmapped).
func addrKey(field string, a netip.Addr) (uint32, error) {
	if a.Is4In6() {
		a = a.Unmap()
	}
	if !a.Is4() {
		return 0, invalid("%s %q: not an IPv4 address", field, a)
	}
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:]), nil
}

// keyAddr is the inverse of addrKey.
func keyAddr(k uint32) netip.Addr {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], k)
	return netip.AddrFrom4(b)
}

// netPort converts a port between host order and the table's network order;
// the conversion is its own inverse.
func netPort(p uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return binary.NativeEndian.Uint16(b[:])
}

// unicastMAC checks a MAC that the switch writes as a destination or
// announces in ARP.
func unicastMAC(field string, mac net.HardwareAddr) ([6]byte, error) {
	var out [6]byte
	if len(mac) != 6 {
		return out, invalid("%s %q: not a 48-bit MAC address", field, mac.String())
	}
	copy(out[:], mac)
	if out == [6]byte{} {
		return out, invalid("%s %s: all-zero MAC", field, mac)
	}
	if out[0]&1 != 0 {
		return out, invalid("%s %s: multicast/broadcast MAC", field, mac)
	}
	return out, nil
}

func macOf(b [6]byte) net.HardwareAddr {
	return net.HardwareAddr(append([]byte(nil), b[:]...))
}

// Proto is an IP protocol number of a service or flow.
type Proto uint8

// Protocols the load balancer handles.
const (
	ProtoICMP Proto = 1
	ProtoTCP  Proto = 6
	ProtoUDP  Proto = 17
)

func (p Proto) String() string {
	switch p {
	case ProtoICMP:
		return "icmp"
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	}
	return fmt.Sprintf("proto(%d)", uint8(p))
}

// ParseProto parses "tcp", "udp" or "icmp".
func ParseProto(s string) (Proto, error) {
	switch s {
	case "tcp", "TCP":
		return ProtoTCP, nil
	case "udp", "UDP":
		return ProtoUDP, nil
	case "icmp", "ICMP":
		return ProtoICMP, nil
	}
	return 0, invalid("proto %q: want tcp, udp or icmp", s)
}
