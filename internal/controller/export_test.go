package controller

import (
	"fmt"
	"strings"
)

// Hooks for the external tests (package controller_test, which can import
// the testbed; the testbed imports this package).

// SetTestHookBeforeChange makes the i-th step of the next commits fail
// when fn returns an error; nil removes the hook.
func SetTestHookBeforeChange(fn func(i int) error) { testHookBeforeChange = fn }

// TablesSnapshot renders the data plane's tables without counters, for
// before/after comparisons.
func TablesSnapshot(c *Controller) (string, error) {
	as, err := c.dp.Addresses()
	if err != nil {
		return "", err
	}
	ss, err := c.dp.Services()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, a := range as {
		s := specOfAddress(nil, a.AddressEntry)
		fmt.Fprintf(&b, "%s fwd=%v arp=%v\n", a.Addr, deref(s.Forward), deref(s.ARP))
	}
	for _, s := range ss {
		fmt.Fprintf(&b, "%s %v\n", s.ServiceKey, specOfMembers(s.Members))
	}
	return b.String(), nil
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}
