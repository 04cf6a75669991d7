package controller

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/containerflow/containerflow/internal/dataplane"
)

// A change is one primitive step on the data plane, produced by planning
// the operations of a request against a copy of the desired state.
type changeKind int

const (
	chSetAddr changeKind = iota
	chDelAddr
	chSetSvc
	chDelSvc
	chReaddress
	chFlood
)

type change struct {
	kind     changeKind
	ip       netip.Addr
	entry    dataplane.AddressEntry
	svc      dataplane.ServiceKey
	members  []dataplane.Member
	old, new netip.Addr
	flood    bool
}

// planner validates operations one after the other against a working copy
// of the desired state, so that later operations of a batch see the effect
// of earlier ones, and records the primitive changes to apply.
type planner struct {
	ports   *portTable
	state   *State
	changes []change
}

// plan validates ops against cur and returns the changes to apply and the
// state after them. Nothing is written. field prefixes name the operation in
// errors ("ops[3].forward.port") when batch is set.
func plan(pt *portTable, cur *State, ops []Op, batch bool) ([]change, *State, error) {
	p := &planner{ports: pt, state: cur.clone()}
	for i, op := range ops {
		prefix := ""
		if batch {
			prefix = fmt.Sprintf("ops[%d].", i)
		}
		if err := p.op(prefix, op); err != nil {
			return nil, nil, err
		}
	}
	if n := len(p.state.Addresses); n > dataplane.MaxAddresses {
		return nil, nil, errField(ErrTableFull, "addresses", "%d entries, the address table holds %d", n, dataplane.MaxAddresses)
	}
	if n := len(p.state.Services); n > dataplane.MaxServices {
		return nil, nil, errField(ErrTableFull, "services", "%d services, the table holds %d", n, dataplane.MaxServices)
	}
	return p.changes, p.state, nil
}

func (p *planner) op(f string, op Op) error {
	switch op.Op {
	case "set_address", "add_address":
		ip, err := parseIPv4(f+"ip", op.IP)
		if err != nil {
			return err
		}
		e, err := resolveAddress(p.ports, f, AddressSpec{Forward: op.Forward, ARP: op.ARP})
		if err != nil {
			return err
		}
		if cur, ok := p.state.Addresses[ip]; ok && op.Op == "add_address" {
			if sameAddress(cur, e) {
				return nil
			}
			return errField(ErrConflict, f+"ip", "%s already has a different entry (move it with /updateForward or PUT /v1/addresses/%s)", ip, ip)
		}
		p.setAddr(ip, e)
	case "move_address":
		ip, err := parseIPv4(f+"ip", op.IP)
		if err != nil {
			return err
		}
		port, err := p.ports.resolve(f+"port", op.Port)
		if err != nil {
			return err
		}
		mac, err := parseMAC(f+"dst_mac", op.DstMAC)
		if err != nil {
			return err
		}
		p.setAddr(ip, dataplane.AddressEntry{
			Forward: &dataplane.Forward{Port: port, DstMAC: mac},
			ARP:     &dataplane.ARP{Port: port},
		})
	case "delete_address":
		ip, err := parseIPv4(f+"ip", op.IP)
		if err != nil {
			return err
		}
		if _, ok := p.state.Addresses[ip]; !ok {
			return errField(ErrNotFound, f+"ip", "no entry for %s", ip)
		}
		delete(p.state.Addresses, ip)
		p.changes = append(p.changes, change{kind: chDelAddr, ip: ip})
	case "set_service":
		if op.Service == nil {
			return errField(ErrInvalid, f+"service", "missing")
		}
		key, err := resolveServiceRef(f+"service.", op.Service.ServiceRef)
		if err != nil {
			return err
		}
		ms, err := resolveMembers(f+"service.members", key.Proto, op.Service.Members)
		if err != nil {
			return err
		}
		p.setSvc(key, ms)
	case "delete_service":
		key, err := p.existingService(f, op.Service)
		if err != nil {
			return err
		}
		delete(p.state.Services, key)
		p.changes = append(p.changes, change{kind: chDelSvc, svc: key})
	case "set_member", "delete_member":
		key, err := p.existingService(f, op.Service)
		if err != nil {
			return err
		}
		if op.Member == nil {
			return errField(ErrInvalid, f+"member", "missing")
		}
		m, err := resolveMember(f+"member.", key.Proto, *op.Member)
		if err != nil {
			return err
		}
		ms := slices.Clone(p.state.Services[key])
		i := slices.IndexFunc(ms, func(x dataplane.Member) bool { return x.Addr == m.Addr })
		if op.Op == "delete_member" {
			if i < 0 {
				return errField(ErrNotFound, f+"member.addr", "%s is not a member of %s", m.Addr, key)
			}
			ms = slices.Delete(ms, i, i+1)
		} else if i >= 0 {
			ms[i] = m
		} else {
			if len(ms) >= dataplane.MaxMembers {
				return errField(ErrTableFull, f+"member", "%s already has %d members, the most a service can have", key, len(ms))
			}
			ms = append(ms, m)
		}
		p.setSvc(key, ms)
	case "readdress_member":
		return p.readdress(f, op.Old, op.New)
	case "set_flood":
		if op.Flood == nil {
			return errField(ErrInvalid, f+"flood", "missing (true or false)")
		}
		p.state.Flood = *op.Flood
		p.changes = append(p.changes, change{kind: chFlood, flood: *op.Flood})
	case "":
		return errField(ErrInvalid, f+"op", "missing")
	default:
		return errField(ErrInvalid, f+"op", "unknown operation %q", op.Op)
	}
	return nil
}

func (p *planner) setAddr(ip netip.Addr, e dataplane.AddressEntry) {
	p.state.Addresses[ip] = e
	p.changes = append(p.changes, change{kind: chSetAddr, ip: ip, entry: e})
}

func (p *planner) setSvc(key dataplane.ServiceKey, ms []dataplane.Member) {
	p.state.Services[key] = ms
	p.changes = append(p.changes, change{kind: chSetSvc, svc: key, members: ms})
}

func (p *planner) existingService(f string, s *ServiceSpec) (dataplane.ServiceKey, error) {
	if s == nil {
		return dataplane.ServiceKey{}, errField(ErrInvalid, f+"service", "missing")
	}
	key, err := resolveServiceRef(f+"service.", s.ServiceRef)
	if err != nil {
		return key, err
	}
	if _, ok := p.state.Services[key]; !ok {
		return key, errField(ErrNotFound, f+"service", "no service %s (unknown VIP, port or protocol)", key)
	}
	return key, nil
}

// readdress replaces member address old by new in every service, the
// seed's /migrateNode. Same address: nothing to do.
func (p *planner) readdress(f, oldS, newS string) error {
	old, err := parseIPv4(f+"old", oldS)
	if err != nil {
		return err
	}
	nw, err := parseIPv4(f+"new", newS)
	if err != nil {
		return err
	}
	if old == nw {
		return nil
	}
	keys := p.state.servicesWith(old)
	if len(keys) == 0 {
		return errField(ErrNotFound, f+"old", "%s is not a member of any service", old)
	}
	for _, k := range keys {
		ms := slices.Clone(p.state.Services[k])
		for i := range ms {
			if ms[i].Addr != old {
				continue
			}
			for _, o := range ms {
				if o.Addr == nw && o.Port == ms[i].Port {
					return errField(ErrConflict, f+"new", "%s is already a member of %s", nw, k)
				}
			}
			ms[i].Addr = nw
		}
		p.state.Services[k] = ms
	}
	p.changes = append(p.changes, change{kind: chReaddress, old: old, new: nw})
	return nil
}
