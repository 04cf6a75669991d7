package controller

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/containerflow/containerflow/internal/dataplane"
)

// portTable resolves port references against the configured ports. A nil
// table accepts any number in range (used for records read back from the
// store, whose ports were checked when they were written).
type portTable struct {
	byNum  map[uint32]PortConfig
	byName map[string]uint32
}

func newPortTable(ports []PortConfig) *portTable {
	pt := &portTable{byNum: map[uint32]PortConfig{}, byName: map[string]uint32{}}
	for _, p := range ports {
		pt.byNum[p.Number] = p
		if p.Name != "" {
			pt.byName[p.Name] = p.Number
		}
	}
	return pt
}

func (pt *portTable) resolve(field string, p PortRef) (uint32, error) {
	s := strings.TrimSpace(string(p))
	if s == "" {
		return 0, errField(ErrInvalid, field, "missing (want a port number or name)")
	}
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		if n < 1 || n > uint64(dataplane.MaxPorts) {
			return 0, errField(ErrInvalid, field, "port %d out of range 1..%d", n, dataplane.MaxPorts)
		}
		if pt != nil {
			if _, ok := pt.byNum[uint32(n)]; !ok {
				return 0, errField(ErrNotFound, field, "unknown port %d (ports: %s)", n, pt.list())
			}
		}
		return uint32(n), nil
	}
	if pt != nil {
		if n, ok := pt.byName[s]; ok {
			return n, nil
		}
	}
	if pt == nil {
		return 0, errField(ErrInvalid, field, "%q is not a port number", s)
	}
	return 0, errField(ErrNotFound, field, "unknown port %q (ports: %s)", s, pt.list())
}

func (pt *portTable) name(n uint32) string {
	if pt == nil {
		return ""
	}
	return pt.byNum[n].Name
}

func (pt *portTable) list() string {
	var parts []string
	for n := uint32(1); n <= uint32(dataplane.MaxPorts); n++ {
		if p, ok := pt.byNum[n]; ok {
			if p.Name != "" {
				parts = append(parts, fmt.Sprintf("%d=%s", n, p.Name))
			} else {
				parts = append(parts, strconv.Itoa(int(n)))
			}
		}
	}
	if len(parts) == 0 {
		return "none configured"
	}
	return strings.Join(parts, ", ")
}

func parseIPv4(field, s string) (netip.Addr, error) {
	if strings.TrimSpace(s) == "" {
		return netip.Addr{}, errField(ErrInvalid, field, "missing (want an IPv4 address)")
	}
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || !a.Unmap().Is4() {
		return netip.Addr{}, errField(ErrInvalid, field, "%q is not an IPv4 address", s)
	}
	a = a.Unmap()
	if a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return netip.Addr{}, errField(ErrInvalid, field, "%s is not a unicast address", a)
	}
	return a, nil
}

// parseMAC parses a MAC the switch writes into frames or ARP answers: 48
// bits, unicast, not all zero. Empty means none.
func parseMAC(field, s string) (net.HardwareAddr, error) {
	if s == "" {
		return nil, nil
	}
	m, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil || len(m) != 6 {
		return nil, errField(ErrInvalid, field, "%q is not a 48-bit MAC address", s)
	}
	if m[0]&1 != 0 {
		return nil, errField(ErrInvalid, field, "%s is a multicast/broadcast MAC", m)
	}
	if string(m) == string(make([]byte, 6)) {
		return nil, errField(ErrInvalid, field, "all-zero MAC")
	}
	return m, nil
}

func macString(m net.HardwareAddr) string {
	if m == nil {
		return ""
	}
	return m.String()
}

func resolveAddress(pt *portTable, field string, s AddressSpec) (dataplane.AddressEntry, error) {
	var e dataplane.AddressEntry
	if s.Forward == nil && s.ARP == nil {
		return e, errField(ErrInvalid, field, "entry has neither forward nor arp")
	}
	if f := s.Forward; f != nil {
		port, err := pt.resolve(field+"forward.port", f.Port)
		if err != nil {
			return e, err
		}
		mac, err := parseMAC(field+"forward.dst_mac", f.DstMAC)
		if err != nil {
			return e, err
		}
		e.Forward = &dataplane.Forward{Port: port, DstMAC: mac}
	}
	if a := s.ARP; a != nil {
		switch {
		case a.ReplyMAC != "" && a.Port != "":
			return e, errField(ErrInvalid, field+"arp", "give either port or reply_mac, not both")
		case a.ReplyMAC != "":
			mac, err := parseMAC(field+"arp.reply_mac", a.ReplyMAC)
			if err != nil {
				return e, err
			}
			e.ARP = &dataplane.ARP{ReplyMAC: mac}
		default:
			port, err := pt.resolve(field+"arp.port", a.Port)
			if err != nil {
				return e, err
			}
			e.ARP = &dataplane.ARP{Port: port}
		}
	}
	return e, nil
}

func specOfAddress(pt *portTable, e dataplane.AddressEntry) AddressSpec {
	var s AddressSpec
	if f := e.Forward; f != nil {
		s.Forward = &ForwardSpec{Port: PortNum(f.Port), PortName: pt.name(f.Port), DstMAC: macString(f.DstMAC)}
	}
	if a := e.ARP; a != nil {
		s.ARP = &ARPSpec{ReplyMAC: macString(a.ReplyMAC)}
		if a.ReplyMAC == nil {
			s.ARP.Port, s.ARP.PortName = PortNum(a.Port), pt.name(a.Port)
		}
	}
	return s
}

func sameAddress(a, b dataplane.AddressEntry) bool {
	return specEqual(specOfAddress(nil, a), specOfAddress(nil, b))
}

func specEqual(a, b AddressSpec) bool {
	if (a.Forward == nil) != (b.Forward == nil) || (a.ARP == nil) != (b.ARP == nil) {
		return false
	}
	if a.Forward != nil && (a.Forward.Port != b.Forward.Port || a.Forward.DstMAC != b.Forward.DstMAC) {
		return false
	}
	if a.ARP != nil && (a.ARP.Port != b.ARP.Port || a.ARP.ReplyMAC != b.ARP.ReplyMAC) {
		return false
	}
	return true
}

func resolveServiceRef(field string, r ServiceRef) (dataplane.ServiceKey, error) {
	vip, err := parseIPv4(field+"vip", r.VIP)
	if err != nil {
		return dataplane.ServiceKey{}, err
	}
	proto, err := dataplane.ParseProto(strings.ToLower(strings.TrimSpace(r.Proto)))
	if err != nil {
		return dataplane.ServiceKey{}, errField(ErrInvalid, field+"proto", "%q: want tcp, udp or icmp", r.Proto)
	}
	switch {
	case proto == dataplane.ProtoICMP && r.Port != 0:
		return dataplane.ServiceKey{}, errField(ErrInvalid, field+"port", "must be 0 for icmp")
	case proto != dataplane.ProtoICMP && r.Port == 0:
		return dataplane.ServiceKey{}, errField(ErrInvalid, field+"port", "must not be 0 for %s", proto)
	}
	return dataplane.ServiceKey{VIP: vip, Port: r.Port, Proto: proto}, nil
}

func refOf(k dataplane.ServiceKey) ServiceRef {
	return ServiceRef{VIP: k.VIP.String(), Port: k.Port, Proto: k.Proto.String()}
}

func resolveMember(field string, proto dataplane.Proto, m MemberSpec) (dataplane.Member, error) {
	addr, err := parseIPv4(field+"addr", m.Addr)
	if err != nil {
		return dataplane.Member{}, err
	}
	if proto == dataplane.ProtoICMP && m.Port != 0 {
		return dataplane.Member{}, errField(ErrInvalid, field+"port", "must be 0 for icmp")
	}
	var st dataplane.MemberState
	switch strings.ToLower(m.State) {
	case "", "active":
		st = dataplane.MemberActive
	case "draining":
		st = dataplane.MemberDraining
	default:
		return dataplane.Member{}, errField(ErrInvalid, field+"state", "%q: want active or draining", m.State)
	}
	return dataplane.Member{Addr: addr, Port: m.Port, State: st}, nil
}

func resolveMembers(field string, proto dataplane.Proto, ms []MemberSpec) ([]dataplane.Member, error) {
	if len(ms) > dataplane.MaxMembers {
		return nil, errField(ErrTableFull, field, "%d members, at most %d per service", len(ms), dataplane.MaxMembers)
	}
	out := make([]dataplane.Member, 0, len(ms))
	for i, m := range ms {
		dm, err := resolveMember(fmt.Sprintf("%s[%d].", field, i), proto, m)
		if err != nil {
			return nil, err
		}
		for _, o := range out {
			if o.Addr == dm.Addr && o.Port == dm.Port {
				return nil, errField(ErrConflict, fmt.Sprintf("%s[%d]", field, i), "duplicate member %s", netip.AddrPortFrom(dm.Addr, dm.Port))
			}
		}
		out = append(out, dm)
	}
	return out, nil
}

func specOfMembers(ms []dataplane.Member) []MemberSpec {
	out := make([]MemberSpec, 0, len(ms))
	for _, m := range ms {
		st := m.State
		if st == 0 {
			st = dataplane.MemberActive
		}
		out = append(out, MemberSpec{Addr: m.Addr.String(), Port: m.Port, State: st.String()})
	}
	return out
}

func sameMembers(a, b []dataplane.Member) bool {
	if len(a) != len(b) {
		return false
	}
	norm := func(m dataplane.Member) dataplane.Member {
		if m.State == 0 {
			m.State = dataplane.MemberActive
		}
		return m
	}
	for _, x := range a {
		found := false
		for _, y := range b {
			if norm(x) == norm(y) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
