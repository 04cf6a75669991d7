package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"

	"github.com/cilium/ebpf"
)

// ServiceKey identifies a load-balanced service. For ProtoICMP (echo) Port
// is 0; for TCP and UDP it must not be.
type ServiceKey struct {
	VIP   netip.Addr
	Port  uint16
	Proto Proto
}

func (k ServiceKey) String() string {
	return fmt.Sprintf("%s/%s", netip.AddrPortFrom(k.VIP, k.Port), k.Proto)
}

// MemberState is the state of a service member.
type MemberState uint8

const (
	// MemberActive members receive new flows.
	MemberActive = MemberState(bpfMemberStateMEMBER_ACTIVE)
	// MemberDraining members keep their established flows but receive no
	// new ones.
	MemberDraining = MemberState(bpfMemberStateMEMBER_DRAINING)
)

func (s MemberState) String() string {
	switch s {
	case MemberActive:
		return "active"
	case MemberDraining:
		return "draining"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Member is a backend of a service. Port 0 keeps the service's port. A zero
// State means MemberActive.
type Member struct {
	Addr  netip.Addr
	Port  uint16
	State MemberState
}

// Service is a service as listed.
type Service struct {
	ServiceKey
	Members  []Member
	Counters ServiceCounters
}

// ServiceCounters count a service's traffic, summed over CPUs.
type ServiceCounters struct {
	Packets  uint64 // client packets DNATed to a member
	Bytes    uint64
	NewFlows uint64 // flows that were given a member
}

func encodeServiceKey(k ServiceKey) (bpfSvcKey, error) {
	vip, err := addrKey("vip", k.VIP)
	if err != nil {
		return bpfSvcKey{}, err
	}
	switch k.Proto {
	case ProtoTCP, ProtoUDP:
		if k.Port == 0 {
			return bpfSvcKey{}, invalid("port: must not be 0 for %s", k.Proto)
		}
	case ProtoICMP:
		if k.Port != 0 {
			return bpfSvcKey{}, invalid("port: must be 0 for icmp")
		}
	default:
		return bpfSvcKey{}, invalid("proto %d: want tcp, udp or icmp", uint8(k.Proto))
	}
	return bpfSvcKey{Vip: vip, Port: netPort(k.Port), Proto: uint8(k.Proto)}, nil
}

func decodeServiceKey(k bpfSvcKey) ServiceKey {
	return ServiceKey{VIP: keyAddr(k.Vip), Port: netPort(k.Port), Proto: Proto(k.Proto)}
}

func encodeMembers(k ServiceKey, members []Member) (bpfService, error) {
	var v bpfService
	if len(members) > len(v.Members) {
		return v, fmt.Errorf("%w: %d members, at most %d per service", ErrTableFull, len(members), len(v.Members))
	}
	seen := map[netip.AddrPort]bool{}
	for i, m := range members {
		addr, err := addrKey(fmt.Sprintf("members[%d].addr", i), m.Addr)
		if err != nil {
			return v, err
		}
		if k.Proto == ProtoICMP && m.Port != 0 {
			return v, invalid("members[%d].port: must be 0 for icmp", i)
		}
		state := m.State
		if state == 0 {
			state = MemberActive
		}
		if state != MemberActive && state != MemberDraining {
			return v, invalid("members[%d].state %d: want active or draining", i, state)
		}
		ap := netip.AddrPortFrom(m.Addr.Unmap(), m.Port)
		if seen[ap] {
			return v, invalid("members[%d]: duplicate member %s", i, ap)
		}
		seen[ap] = true
		v.Members[i] = bpfMember{Addr: addr, Port: netPort(m.Port), State: uint8(state)}
	}
	return v, nil
}

func decodeMembers(v bpfService) []Member {
	var out []Member
	for _, m := range v.Members {
		if m.State == uint8(bpfMemberStateMEMBER_NONE) {
			continue
		}
		out = append(out, Member{Addr: keyAddr(m.Addr), Port: netPort(m.Port), State: MemberState(m.State)})
	}
	return out
}

// SetService creates or replaces a service with the given members, in one
// atomic update. Flows already in the connection table keep their member
// even if it is no longer listed; new flows are spread over the active
// members by rendezvous hashing, so adding or removing one member moves
// only the new flows that member wins or loses.
func (d *Dataplane) SetService(key ServiceKey, members ...Member) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.setServiceLocked(key, members); err != nil {
		return fmt.Errorf("set service %s: %w", key, err)
	}
	return nil
}

func (d *Dataplane) setServiceLocked(key ServiceKey, members []Member) error {
	if err := d.checkOpen(); err != nil {
		return err
	}
	k, err := encodeServiceKey(key)
	if err != nil {
		return err
	}
	v, err := encodeMembers(key, members)
	if err != nil {
		return err
	}
	created := true
	if err := d.objs.SvcStats.Update(&k, perCPU[bpfSvcCounters](d), ebpf.UpdateNoExist); err != nil {
		if !errors.Is(err, ebpf.ErrKeyExist) {
			return mapErr("create counters", err)
		}
		created = false
	}
	if err := d.objs.Services.Update(&k, &v, ebpf.UpdateAny); err != nil {
		if created {
			_ = d.objs.SvcStats.Delete(&k)
		}
		return mapErr("update services", err)
	}
	return nil
}

// DeleteService removes a service and the flows that entered through it
// (their connection and reverse-NAT entries).
func (d *Dataplane) DeleteService(key ServiceKey) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.checkOpen(); err != nil {
		return err
	}
	k, err := encodeServiceKey(key)
	if err != nil {
		return fmt.Errorf("delete service %s: %w", key, err)
	}
	if err := d.objs.Services.Delete(&k); err != nil {
		return mapErr(fmt.Sprintf("delete service %s", key), err)
	}
	_ = d.objs.SvcStats.Delete(&k)
	if _, err := d.deleteFlowsLocked(func(f Flow) bool {
		return f.Proto == key.Proto && f.VIP == netip.AddrPortFrom(key.VIP.Unmap(), key.Port)
	}); err != nil {
		return fmt.Errorf("delete service %s: %w", key, err)
	}
	return nil
}

// Service returns one service with its counters.
func (d *Dataplane) Service(key ServiceKey) (Service, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.checkOpen(); err != nil {
		return Service{}, err
	}
	k, err := encodeServiceKey(key)
	if err != nil {
		return Service{}, fmt.Errorf("read service %s: %w", key, err)
	}
	var v bpfService
	if err := d.objs.Services.Lookup(&k, &v); err != nil {
		return Service{}, mapErr(fmt.Sprintf("read service %s", key), err)
	}
	return d.service(k, v), nil
}

func (d *Dataplane) service(k bpfSvcKey, v bpfService) Service {
	s := Service{ServiceKey: decodeServiceKey(k), Members: decodeMembers(v)}
	var per []bpfSvcCounters
	if err := d.objs.SvcStats.Lookup(&k, &per); err == nil {
		for _, c := range per {
			s.Counters.Packets += c.Packets
			s.Counters.Bytes += c.Bytes
			s.Counters.NewFlows += c.NewFlows
		}
	}
	return s
}

// Services lists the services, sorted by VIP, port and protocol.
func (d *Dataplane) Services() ([]Service, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.checkOpen(); err != nil {
		return nil, err
	}
	return d.servicesLocked()
}

func (d *Dataplane) servicesLocked() ([]Service, error) {
	var (
		k   bpfSvcKey
		v   bpfService
		out []Service
	)
	it := d.objs.Services.Iterate()
	for it.Next(&k, &v) {
		out = append(out, d.service(k, v))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].ServiceKey, out[j].ServiceKey
		if c := a.VIP.Compare(b.VIP); c != 0 {
			return c < 0
		}
		if a.Port != b.Port {
			return a.Port < b.Port
		}
		return a.Proto < b.Proto
	})
	return out, nil
}

// SetMemberState sets the state of every member of the service whose
// address is member (ErrNotFound if there is none). Draining a member stops
// new flows to it and keeps its established ones.
func (d *Dataplane) SetMemberState(key ServiceKey, member netip.Addr, state MemberState) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.checkOpen(); err != nil {
		return err
	}
	if state != MemberActive && state != MemberDraining {
		return fmt.Errorf("set member state: %w", invalid("state %d: want active or draining", state))
	}
	k, err := encodeServiceKey(key)
	if err != nil {
		return fmt.Errorf("set member state in %s: %w", key, err)
	}
	maddr, err := addrKey("member", member)
	if err != nil {
		return fmt.Errorf("set member state in %s: %w", key, err)
	}
	var v bpfService
	if err := d.objs.Services.Lookup(&k, &v); err != nil {
		return mapErr(fmt.Sprintf("set member state in %s", key), err)
	}
	found := false
	for i := range v.Members {
		m := &v.Members[i]
		if m.State != uint8(bpfMemberStateMEMBER_NONE) && m.Addr == maddr {
			m.State = uint8(state)
			found = true
		}
	}
	if !found {
		return fmt.Errorf("set member state in %s: member %s: %w", key, member, ErrNotFound)
	}
	if err := d.objs.Services.Update(&k, &v, ebpf.UpdateExist); err != nil {
		return mapErr(fmt.Sprintf("set member state in %s", key), err)
	}
	return nil
}

// ReaddressMember replaces the member address old by new everywhere: in
// every service and in the connection and reverse-NAT tables, so flows that
// were using the member keep going to it at its new address (the seed's
// /migrateNode). The address table is not touched: give new a forward entry
// first. The order of the steps keeps every packet consistent: replies from
// new are un-NATed before any client packet is sent to new, and replies
// from old keep working until the end. ErrNotFound if old is in no service
// and no flow.
func (d *Dataplane) ReaddressMember(old, new netip.Addr) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.checkOpen(); err != nil {
		return err
	}
	oldKey, err := addrKey("old_ipv4", old)
	if err != nil {
		return fmt.Errorf("readdress member: %w", err)
	}
	newKey, err := addrKey("new_ipv4", new)
	if err != nil {
		return fmt.Errorf("readdress member: %w", err)
	}
	if oldKey == newKey {
		return nil
	}
	errf := func(err error) error { return fmt.Errorf("readdress member %s -> %s: %w", old, new, err) }
	touched := 0

	// 1. Reverse NAT entries for the new address, beside the old ones.
	var (
		rk     bpfFlowKey
		rv     bpfRevEntry
		oldRev []bpfFlowKey
	)
	it := d.objs.ReverseNat.Iterate()
	for it.Next(&rk, &rv) {
		if rk.Saddr != oldKey {
			continue
		}
		oldRev = append(oldRev, rk)
		nk := rk
		nk.Saddr = newKey
		if err := d.objs.ReverseNat.Put(&nk, &rv); err != nil {
			return errf(mapErr("add reverse nat entry", err))
		}
	}
	if err := it.Err(); err != nil {
		return errf(fmt.Errorf("list reverse nat: %w", err))
	}

	// 2. Flows: client packets now go to the new address.
	var (
		fk    bpfFlowKey
		ct    bpfCtEntry
		flows []bpfFlowKey
	)
	it = d.objs.Conntrack.Iterate()
	for it.Next(&fk, &ct) {
		if ct.MemberAddr == oldKey {
			flows = append(flows, fk)
		}
	}
	if err := it.Err(); err != nil {
		return errf(fmt.Errorf("list conntrack: %w", err))
	}
	for _, k := range flows {
		// Re-read: the program updates counters concurrently.
		if err := d.objs.Conntrack.Lookup(&k, &ct); err != nil {
			continue // evicted meanwhile
		}
		ct.MemberAddr = newKey
		if err := d.objs.Conntrack.Update(&k, &ct, ebpf.UpdateExist); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return errf(mapErr("update conntrack", err))
		}
		touched++
	}

	// 3. Services: new flows hash over the new address.
	var (
		sk bpfSvcKey
		sv bpfService
	)
	type svc struct {
		k bpfSvcKey
		v bpfService
	}
	var svcs []svc
	it = d.objs.Services.Iterate()
	for it.Next(&sk, &sv) {
		changed := false
		for i := range sv.Members {
			m := &sv.Members[i]
			if m.State != uint8(bpfMemberStateMEMBER_NONE) && m.Addr == oldKey {
				m.Addr = newKey
				changed = true
			}
		}
		if changed {
			svcs = append(svcs, svc{sk, sv})
		}
	}
	if err := it.Err(); err != nil {
		return errf(fmt.Errorf("list services: %w", err))
	}
	for _, s := range svcs {
		if err := d.objs.Services.Update(&s.k, &s.v, ebpf.UpdateExist); err != nil {
			return errf(mapErr("update service", err))
		}
		touched++
	}

	// 4. The old address's reverse entries are no longer reachable.
	for _, k := range oldRev {
		_ = d.objs.ReverseNat.Delete(&k)
	}
	if touched == 0 && len(oldRev) == 0 {
		return errf(fmt.Errorf("member %s: %w", old, ErrNotFound))
	}
	d.log.Info("member readdressed", "old", old, "new", new, "flows", len(flows), "services", len(svcs))
	return nil
}
