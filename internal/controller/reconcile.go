package controller

import (
	"fmt"
	"net/netip"

	"github.com/containerflow/containerflow/internal/dataplane"
)

// reconcileLocked makes the tables equal to st, touching only entries that
// differ, so traffic through unchanged entries never notices. Order: new
// and changed addresses first (members need their forward entries before a
// service sends to them), then services, then what is no longer wanted.
// Failures are logged and returned as problems (reported by /v1/health):
// one bad entry must not keep the rest of the switch from being programmed.
func (c *Controller) reconcileLocked(st *State) []string {
	var problems []string
	fail := func(what string, err error) {
		msg := fmt.Sprintf("%s: %v", what, err)
		c.log.Error("reconcile", "problem", msg)
		problems = append(problems, msg)
	}
	setAddrs, setSvcs, delSvcs, delAddrs := 0, 0, 0, 0

	actual, err := c.dp.Addresses()
	if err != nil {
		fail("list addresses", err)
		return problems
	}
	have := map[netip.Addr]dataplane.AddressEntry{}
	for _, a := range actual {
		have[a.Addr] = a.AddressEntry
	}
	for _, ip := range st.sortedAddrs() {
		want := st.Addresses[ip]
		if cur, ok := have[ip]; ok && sameAddress(cur, want) {
			continue
		}
		if err := c.dp.SetAddress(ip, want); err != nil {
			fail("set address "+ip.String(), err)
			continue
		}
		setAddrs++
	}

	svcs, err := c.dp.Services()
	if err != nil {
		fail("list services", err)
		return problems
	}
	haveSvc := map[dataplane.ServiceKey][]dataplane.Member{}
	for _, s := range svcs {
		haveSvc[s.ServiceKey] = s.Members
	}
	for _, k := range st.sortedServices() {
		want := st.Services[k]
		if cur, ok := haveSvc[k]; ok && sameMembers(cur, want) {
			continue
		}
		if err := c.dp.SetService(k, want...); err != nil {
			fail("set service "+k.String(), err)
			continue
		}
		setSvcs++
	}
	for k := range haveSvc {
		if _, ok := st.Services[k]; !ok {
			if err := c.dp.DeleteService(k); err != nil {
				fail("delete service "+k.String(), err)
				continue
			}
			delSvcs++
		}
	}
	for ip := range have {
		if _, ok := st.Addresses[ip]; !ok {
			if err := c.dp.DeleteAddress(ip); err != nil {
				fail("delete address "+ip.String(), err)
				continue
			}
			delAddrs++
		}
	}
	if flood, err := c.dp.Flood(); err != nil {
		fail("read flood", err)
	} else if flood != st.Flood {
		if err := c.dp.SetFlood(st.Flood); err != nil {
			fail("set flood", err)
		}
	}
	c.log.Info("tables reconciled", "addresses_set", setAddrs, "services_set", setSvcs,
		"services_deleted", delSvcs, "addresses_deleted", delAddrs, "problems", len(problems))
	return problems
}
