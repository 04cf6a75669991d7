package controller

import (
	"maps"
	"net/netip"
	"slices"

	"github.com/containerflow/containerflow/internal/dataplane"
)

// State is the desired content of the switch tables: what the controller
// has acknowledged, keeps in its store and re-applies on start. Ports are
// not part of it; they come from the configuration. Connection-table
// entries are not either: they belong to the data plane.
type State struct {
	Flood     bool
	Addresses map[netip.Addr]dataplane.AddressEntry
	Services  map[dataplane.ServiceKey][]dataplane.Member
}

func newState() *State {
	return &State{
		Flood:     true,
		Addresses: map[netip.Addr]dataplane.AddressEntry{},
		Services:  map[dataplane.ServiceKey][]dataplane.Member{},
	}
}

// clone copies the maps; entries are treated as immutable values (every
// change replaces them), so a shallow copy of each is enough.
func (s *State) clone() *State {
	c := &State{Flood: s.Flood, Addresses: maps.Clone(s.Addresses), Services: maps.Clone(s.Services)}
	for k, v := range c.Services {
		c.Services[k] = slices.Clone(v)
	}
	return c
}

// sortedAddrs returns the addresses in order, for deterministic output.
func (s *State) sortedAddrs() []netip.Addr {
	out := slices.Collect(maps.Keys(s.Addresses))
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

func (s *State) sortedServices() []dataplane.ServiceKey {
	out := slices.Collect(maps.Keys(s.Services))
	slices.SortFunc(out, compareKeys)
	return out
}

func compareKeys(a, b dataplane.ServiceKey) int {
	if c := a.VIP.Compare(b.VIP); c != 0 {
		return c
	}
	if a.Port != b.Port {
		return int(a.Port) - int(b.Port)
	}
	return int(a.Proto) - int(b.Proto)
}

// servicesWith lists the services that have addr as a member.
func (s *State) servicesWith(addr netip.Addr) []dataplane.ServiceKey {
	var out []dataplane.ServiceKey
	for _, k := range s.sortedServices() {
		for _, m := range s.Services[k] {
			if m.Addr == addr {
				out = append(out, k)
				break
			}
		}
	}
	return out
}
