package controller

import (
	"errors"
	"fmt"

	"github.com/containerflow/containerflow/internal/dataplane"
)

// Apply validates ops as a whole and applies them all or none.
//
// Guarantee: every operation is validated against the desired state as
// the earlier operations of the list leave it — addresses, MACs, ports,
// services, members, table capacity — before the first write; a list with
// any bad operation changes nothing. A validated list is applied in order;
// if the kernel refuses a step (which validation makes rare: a race for
// the last table slot, memory pressure), the steps already applied are
// undone in reverse order, each restoring the entry read back just before
// it was changed, and the error is returned. One thing cannot be restored:
// the connection-table entries of a service deleted by the list (a
// restored service's flows pick their member afresh). The new desired state
// is committed to the store only after every step succeeded; if the
// commit fails, the steps are undone too. batch makes errors name the
// operation ("ops[2].forward.port").
func (c *Controller) Apply(ops []Op, batch bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	changes, next, err := plan(c.ports, c.state, ops, batch)
	if err != nil {
		return err
	}
	return c.commitLocked(changes, next, func() error { return c.store.commit(changes, next) })
}

// Replace makes target the desired state, changing only the entries that
// differ (used by /cleanup and /reinitialize), with Apply's guarantee.
func (c *Controller) Replace(target *State) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	changes := diff(c.state, target)
	next := target.clone()
	return c.commitLocked(changes, next, func() error { return c.store.replace(next) })
}

// testHookBeforeChange, when set by a test, runs before the i-th change of
// a commit; an error makes that step fail as if the kernel had refused it.
var testHookBeforeChange func(i int) error

func (c *Controller) commitLocked(changes []change, next *State, persist func() error) error {
	undo := make([]func() error, 0, len(changes))
	rollback := func(cause error) error {
		var errs []error
		for i := len(undo) - 1; i >= 0; i-- {
			if err := undo[i](); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			c.log.Error("rollback incomplete; reconciling with the desired state", "err", errors.Join(errs...))
			c.problems = c.reconcileLocked(c.state)
			return fmt.Errorf("%w (rollback incomplete: %w)", cause, errors.Join(errs...))
		}
		return cause
	}
	for i, ch := range changes {
		if hook := testHookBeforeChange; hook != nil {
			if err := hook(i); err != nil {
				return rollback(err)
			}
		}
		u, err := c.execute(ch)
		if err != nil {
			return rollback(err)
		}
		undo = append(undo, u)
	}
	if err := persist(); err != nil {
		return rollback(err)
	}
	c.state = next
	return nil
}

// execute applies one change and returns how to undo it, from the entry as
// the data plane holds it just before the change.
func (c *Controller) execute(ch change) (func() error, error) {
	dp := c.dp
	switch ch.kind {
	case chSetAddr, chDelAddr:
		prev, err := dp.Address(ch.ip)
		existed := err == nil
		if err != nil && !errors.Is(err, dataplane.ErrNotFound) {
			return nil, err
		}
		restore := func() error {
			if existed {
				return dp.SetAddress(ch.ip, prev.AddressEntry)
			}
			err := dp.DeleteAddress(ch.ip)
			if errors.Is(err, dataplane.ErrNotFound) {
				return nil
			}
			return err
		}
		if ch.kind == chSetAddr {
			err = dp.SetAddress(ch.ip, ch.entry)
		} else if existed {
			err = dp.DeleteAddress(ch.ip)
		}
		return restore, err
	case chSetSvc, chDelSvc:
		prev, err := dp.Service(ch.svc)
		existed := err == nil
		if err != nil && !errors.Is(err, dataplane.ErrNotFound) {
			return nil, err
		}
		restore := func() error {
			if existed {
				return dp.SetService(ch.svc, prev.Members...)
			}
			err := dp.DeleteService(ch.svc)
			if errors.Is(err, dataplane.ErrNotFound) {
				return nil
			}
			return err
		}
		if ch.kind == chSetSvc {
			err = dp.SetService(ch.svc, ch.members...)
		} else if existed {
			err = dp.DeleteService(ch.svc)
		}
		return restore, err
	case chReaddress:
		err := dp.ReaddressMember(ch.old, ch.new)
		return func() error { return dp.ReaddressMember(ch.new, ch.old) }, err
	case chFlood:
		prev, err := dp.Flood()
		if err != nil {
			return nil, err
		}
		return func() error { return dp.SetFlood(prev) }, dp.SetFlood(ch.flood)
	}
	return nil, fmt.Errorf("unknown change kind %d", ch.kind)
}

// diff lists the changes that turn cur into target: addresses set first,
// services next, deletions last (the order reconcile uses, for the same
// reason).
func diff(cur, target *State) []change {
	var out []change
	for _, ip := range target.sortedAddrs() {
		if e, ok := cur.Addresses[ip]; !ok || !sameAddress(e, target.Addresses[ip]) {
			out = append(out, change{kind: chSetAddr, ip: ip, entry: target.Addresses[ip]})
		}
	}
	for _, k := range target.sortedServices() {
		if ms, ok := cur.Services[k]; !ok || !sameMembers(ms, target.Services[k]) {
			out = append(out, change{kind: chSetSvc, svc: k, members: target.Services[k]})
		}
	}
	for _, k := range cur.sortedServices() {
		if _, ok := target.Services[k]; !ok {
			out = append(out, change{kind: chDelSvc, svc: k})
		}
	}
	for _, ip := range cur.sortedAddrs() {
		if _, ok := target.Addresses[ip]; !ok {
			out = append(out, change{kind: chDelAddr, ip: ip})
		}
	}
	if cur.Flood != target.Flood {
		out = append(out, change{kind: chFlood, flood: target.Flood})
	}
	return out
}
