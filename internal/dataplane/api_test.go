package dataplane

import (
	"errors"
	"net"
	"net/netip"
	"testing"
)

func TestAddressValidation(t *testing.T) {
	d := newPacketFixture(t)
	ip := netip.MustParseAddr("198.18.5.5")
	cases := []struct {
		name string
		ip   netip.Addr
		e    AddressEntry
		want error
	}{
		{"ipv6 address", netip.MustParseAddr("2001:db8::1"), AddressEntry{Forward: &Forward{Port: 1}}, ErrInvalid},
		{"zero address", netip.Addr{}, AddressEntry{Forward: &Forward{Port: 1}}, ErrInvalid},
		{"empty entry", ip, AddressEntry{}, ErrInvalid},
		{"port out of range", ip, AddressEntry{Forward: &Forward{Port: uint32(MaxPorts) + 1}}, ErrInvalid},
		{"port 0", ip, AddressEntry{Forward: &Forward{Port: 0}}, ErrInvalid},
		{"port not attached", ip, AddressEntry{Forward: &Forward{Port: 9}}, ErrUnknownPort},
		{"arp port not attached", ip, AddressEntry{ARP: &ARP{Port: 9}}, ErrUnknownPort},
		{"short mac", ip, AddressEntry{Forward: &Forward{Port: 1, DstMAC: net.HardwareAddr{1, 2}}}, ErrInvalid},
		{"broadcast mac", ip, AddressEntry{Forward: &Forward{Port: 1, DstMAC: broadcast}}, ErrInvalid},
		{"zero mac", ip, AddressEntry{Forward: &Forward{Port: 1, DstMAC: make(net.HardwareAddr, 6)}}, ErrInvalid},
		{"arp port and reply mac", ip, AddressEntry{ARP: &ARP{Port: 1, ReplyMAC: macVIP}}, ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := d.SetAddress(c.ip, c.e)
			if !errors.Is(err, c.want) {
				t.Fatalf("SetAddress: %v, want %v", err, c.want)
			}
			if _, err := d.Address(ip); !errors.Is(err, ErrNotFound) {
				t.Errorf("a rejected entry was written (%v)", err)
			}
		})
	}
	if err := d.DeleteAddress(ip); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteAddress of a missing entry: %v", err)
	}
	if err := d.DeleteForward(ip); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteForward of a missing entry: %v", err)
	}
}

func TestAddressViews(t *testing.T) {
	d := newPacketFixture(t)
	ip := netip.MustParseAddr("198.18.5.5")
	if err := d.SetARP(ip, ARP{Port: 2}); err != nil {
		t.Fatal(err)
	}
	if err := d.SetForward(ip, Forward{Port: 3, DstMAC: macC}); err != nil {
		t.Fatal(err)
	}
	a, err := d.Address(ip)
	if err != nil {
		t.Fatal(err)
	}
	if a.ARP == nil || a.ARP.Port != 2 || a.Forward == nil || a.Forward.Port != 3 || a.Forward.DstMAC.String() != macC.String() {
		t.Fatalf("entry %+v / %+v / %+v", a, a.Forward, a.ARP)
	}
	if err := d.DeleteARP(ip); err != nil {
		t.Fatal(err)
	}
	if a, _ = d.Address(ip); a.ARP != nil || a.Forward == nil {
		t.Fatalf("after DeleteARP: %+v", a)
	}
	if err := d.DeleteForward(ip); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Address(ip); !errors.Is(err, ErrNotFound) {
		t.Fatalf("entry with no views left: %v, want ErrNotFound", err)
	}
	all, err := d.Addresses()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 12 || all[0].Addr != ipClient {
		t.Errorf("Addresses: %d entries starting with %v, want the fixture's 12 sorted", len(all), all[0].Addr)
	}
}

func TestAddressTableFull(t *testing.T) {
	d := newPacketFixture(t)
	existing, _ := d.Addresses()
	for i := len(existing); i < MaxAddresses; i++ {
		ip := netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})
		if err := d.SetForward(ip, Forward{Port: 2}); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	extra := netip.MustParseAddr("198.19.255.255")
	if err := d.SetForward(extra, Forward{Port: 2}); !errors.Is(err, ErrTableFull) {
		t.Fatalf("entry beyond %d: %v, want ErrTableFull", MaxAddresses, err)
	}
	key, _ := addrKey("", extra)
	var per []bpfAddrCounters
	if err := d.objs.AddrStats.Lookup(key, &per); err == nil {
		t.Errorf("a refused entry left counters behind")
	}
	// Replacing an existing entry still works when the table is full.
	if err := d.MoveAddress(ipB, 3, nil); err != nil {
		t.Errorf("move in a full table: %v", err)
	}
}

func TestServiceValidation(t *testing.T) {
	d := newPacketFixture(t)
	vip := ServiceKey{VIP: ipVIP, Port: 80, Proto: ProtoTCP}
	many := make([]Member, MaxMembers+1)
	for i := range many {
		many[i] = Member{Addr: netip.AddrFrom4([4]byte{198, 18, 7, byte(i + 1)})}
	}
	cases := []struct {
		name string
		k    ServiceKey
		m    []Member
		want error
	}{
		{"too many members", vip, many, ErrTableFull},
		{"tcp port 0", ServiceKey{VIP: ipVIP, Proto: ProtoTCP}, nil, ErrInvalid},
		{"icmp with port", ServiceKey{VIP: ipVIP, Port: 1, Proto: ProtoICMP}, nil, ErrInvalid},
		{"icmp member with port", ServiceKey{VIP: ipVIP, Proto: ProtoICMP}, []Member{{Addr: memberIP(1), Port: 5}}, ErrInvalid},
		{"unknown proto", ServiceKey{VIP: ipVIP, Port: 1, Proto: 47}, nil, ErrInvalid},
		{"ipv6 vip", ServiceKey{VIP: netip.MustParseAddr("::1"), Port: 1, Proto: ProtoTCP}, nil, ErrInvalid},
		{"ipv6 member", vip, []Member{{Addr: netip.MustParseAddr("::1")}}, ErrInvalid},
		{"duplicate member", vip, []Member{{Addr: memberIP(1)}, {Addr: memberIP(1)}}, ErrInvalid},
		{"bad state", vip, []Member{{Addr: memberIP(1), State: 9}}, ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := d.SetService(c.k, c.m...); !errors.Is(err, c.want) {
				t.Fatalf("SetService: %v, want %v", err, c.want)
			}
		})
	}
	if s, _ := d.Services(); len(s) != 0 {
		t.Errorf("rejected services were written: %+v", s)
	}
	mustSetService(t, d, vip, Member{Addr: memberIP(1)})
	if err := d.SetMemberState(vip, memberIP(2), MemberDraining); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetMemberState of a non-member: %v", err)
	}
	if err := d.SetMemberState(ServiceKey{VIP: ipVIP, Port: 81, Proto: ProtoTCP}, memberIP(1), MemberDraining); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetMemberState in a missing service: %v", err)
	}
	if err := d.DeleteService(ServiceKey{VIP: ipVIP, Port: 81, Proto: ProtoTCP}); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteService of a missing service: %v", err)
	}
	s, err := d.Service(vip)
	if err != nil || len(s.Members) != 1 || s.Members[0].State != MemberActive || s.Members[0].Port != 0 {
		t.Errorf("Service: %+v, %v", s, err)
	}
}

func TestServiceTableFull(t *testing.T) {
	d := newPacketFixture(t)
	for i := range MaxServices {
		k := ServiceKey{VIP: ipVIP, Port: uint16(i + 1), Proto: ProtoUDP}
		if err := d.SetService(k, Member{Addr: memberIP(1)}); err != nil {
			t.Fatalf("service %d: %v", i, err)
		}
	}
	if err := d.SetService(ServiceKey{VIP: ipVIP, Port: 9999, Proto: ProtoUDP}); !errors.Is(err, ErrTableFull) {
		t.Fatalf("service beyond %d: %v, want ErrTableFull", MaxServices, err)
	}
}

func TestCountersAndFlood(t *testing.T) {
	d := newPacketFixture(t)
	c, err := d.Counters()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"non_ip", "no_route", "ttl_exceeded", "arp_flooded", "lb_no_member", "unknown_ingress"} {
		if _, ok := c.Global[name]; !ok {
			t.Errorf("global counter %q missing from %v", name, c.Global)
		}
	}
	if len(c.Ports) != 4 {
		t.Errorf("counters of %d ports, want 4", len(c.Ports))
	}
	if on, _ := d.Flood(); !on {
		t.Errorf("flooding is off after Load, want on")
	}
	if err := d.SetFlood(false); err != nil {
		t.Fatal(err)
	}
	if on, _ := d.Flood(); on {
		t.Errorf("flooding still on")
	}
}

func TestClosed(t *testing.T) {
	d := loadOrSkip(t, Options{})
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.SetForward(ipB, Forward{Port: 1}); !errors.Is(err, ErrClosed) {
		t.Errorf("SetForward after Close: %v", err)
	}
	if _, err := d.Counters(); !errors.Is(err, ErrClosed) {
		t.Errorf("Counters after Close: %v", err)
	}
}

func TestPinPathMustBeBPFFS(t *testing.T) {
	requireRoot(t)
	if _, err := Load(Options{PinPath: t.TempDir()}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Load with a pin path on tmpfs: %v, want ErrInvalid", err)
	}
}
