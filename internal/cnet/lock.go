package cnet

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/containerflow/containerflow/internal/nsrun"
)

// Lock tables are named lockPrefix + a serial. CRIU's own lock tables are
// named CRIU-*, so the two never collide. The tables are managed over
// netlink directly: exec'ing nft cost 10-15 ms per call, on the path
// between the switch update and the container answering again.
//
// Any nftables change that deletes something — a table, a chain, a rule,
// even a set element, or a chain's policy update — waits for an RCU grace
// period in the kernel's commit: 8-15 ms here, measured. Adding is
// sub-millisecond. So a lock is opened by *adding* an element to its
// "open" set (its chains accept what the set lets through), a new lock is
// a new table, and open tables are removed later, off the frozen path
// (RemoveOpenLocks).
const lockPrefix = "cflow_lock_"

// openKey is the one element of a lock's "open" set.
var openKey = []byte{1, 0, 0, 0}

func nftConn(nsName string) (*nftables.Conn, func(), error) {
	h, err := netns.GetFromPath(nsrun.Path(nsName))
	if err != nil {
		return nil, nil, fmt.Errorf("open netns %s: %w", nsName, err)
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		h.Close()
		return nil, nil, fmt.Errorf("nftables in %s: %w", nsName, err)
	}
	return c, func() { c.CloseLasting(); h.Close() }, nil
}

func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

var lockSerial atomic.Uint64

// Lock makes the namespace drop every IPv4 packet in and out (loopback
// excepted), without touching sockets. It is one netlink transaction that
// only adds: a new table, closed.
func Lock(nsName string) error {
	c, done, err := nftConn(nsName)
	if err != nil {
		return err
	}
	defer done()
	name := fmt.Sprintf("%s%d_%d", lockPrefix, time.Now().UnixNano(), lockSerial.Add(1))
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: name})
	open := &nftables.Set{Table: t, Name: "open", KeyType: nftables.TypeInteger}
	if err := c.AddSet(open, nil); err != nil {
		return fmt.Errorf("lock %s: %w", nsName, err)
	}
	udp := &nftables.Set{Table: t, Name: udpSet, KeyType: nftables.TypeInteger}
	if err := c.AddSet(udp, nil); err != nil {
		return fmt.Errorf("lock %s: %w", nsName, err)
	}
	drop := nftables.ChainPolicyDrop
	prio := nftables.ChainPriority(-300)
	for _, ch := range []struct {
		name string
		hook *nftables.ChainHook
		meta expr.MetaKey
	}{
		{"in", nftables.ChainHookInput, expr.MetaKeyIIFNAME},
		{"out", nftables.ChainHookOutput, expr.MetaKeyOIFNAME},
	} {
		chain := c.AddChain(&nftables.Chain{Name: ch.name, Table: t, Type: nftables.ChainTypeFilter, Hooknum: ch.hook, Priority: &prio, Policy: &drop})
		c.AddRule(&nftables.Rule{Table: t, Chain: chain, Exprs: []expr.Any{
			&expr.Meta{Key: ch.meta, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname("lo")},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}})
		c.AddRule(&nftables.Rule{Table: t, Chain: chain, Exprs: []expr.Any{
			&expr.Immediate{Register: 1, Data: openKey},
			&expr.Lookup{SourceRegister: 1, SetName: open.Name, SetID: open.ID},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}})
		c.AddRule(&nftables.Rule{Table: t, Chain: chain, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
			&expr.Immediate{Register: 1, Data: openKey},
			&expr.Lookup{SourceRegister: 1, SetName: udp.Name, SetID: udp.ID},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("lock %s: %w", nsName, err)
	}
	return nil
}

// gateTables lists the tables named prefix*, each with whether its set
// holds openKey (a lock opened, a hold released).
func gateTables(c *nftables.Conn, prefix, set string) (map[*nftables.Table]bool, error) {
	ts, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, err
	}
	out := map[*nftables.Table]bool{}
	for _, t := range ts {
		if !strings.HasPrefix(t.Name, prefix) {
			continue
		}
		s, err := c.GetSetByName(t, set)
		if err != nil {
			return nil, err
		}
		elems, err := c.GetSetElements(s)
		if err != nil {
			return nil, err
		}
		out[t] = len(elems) > 0
	}
	return out, nil
}

// forGates runs act on every prefix* table, with whether it is open, on
// one connection, and commits what act queued (it says whether it did).
func forGates(nsName, prefix, set string, act func(c *nftables.Conn, t *nftables.Table, open bool) (bool, error)) error {
	c, done, err := nftConn(nsName)
	if err != nil {
		return err
	}
	defer done()
	gates, err := gateTables(c, prefix, set)
	if err != nil {
		return err
	}
	queued := false
	for t, open := range gates {
		q, err := act(c, t, open)
		if err != nil {
			return err
		}
		queued = queued || q
	}
	if !queued {
		return nil
	}
	return c.Flush()
}

// openGates adds openKey to set in every closed prefix* table.
func openGates(nsName, prefix, set string) error {
	return forGates(nsName, prefix, set, func(c *nftables.Conn, t *nftables.Table, open bool) (bool, error) {
		if open {
			return false, nil
		}
		return true, c.SetAddElements(&nftables.Set{Table: t, Name: set, KeyType: nftables.TypeInteger}, []nftables.SetElement{{Key: openKey}})
	})
}

// removeOpenGates deletes the open prefix* tables. One never closes
// again, so checking first is safe against a gate made meanwhile.
func removeOpenGates(nsName, prefix, set string) error {
	return forGates(nsName, prefix, set, func(c *nftables.Conn, t *nftables.Table, open bool) (bool, error) {
		if open {
			c.DelTable(t)
		}
		return open, nil
	})
}

// Unlock opens every lock of the namespace (adding only: fast, see
// lockPrefix). Unlocking an unlocked namespace is fine.
func Unlock(nsName string) error {
	if err := openGates(nsName, lockPrefix, "open"); err != nil {
		return fmt.Errorf("unlock %s: %w", nsName, err)
	}
	return nil
}

// udpSet is a lock's second gate: UDP only (OpenUDP).
const udpSet = "udp"

// OpenUDP lets UDP through every lock of the namespace, TCP and the rest
// staying locked (adding only, like Unlock). A destination going live
// delivers the datagrams held for the container before its program runs
// (a QUIC stack drops older packets once it has newer ones), while its
// TCP stays closed until the restore can no longer fail: a restored
// socket that acknowledged a client's data and then died with CRIU would
// lose that data (docs/soak.md, finding 13).
func OpenUDP(nsName string) error {
	if err := openGates(nsName, lockPrefix, udpSet); err != nil {
		return fmt.Errorf("open UDP in %s: %w", nsName, err)
	}
	return nil
}

// RemoveOpenLocks removes the lock tables Unlock opened (slow: call it off
// the frozen path). A lock still closed — taken since — stays.
func RemoveOpenLocks(nsName string) error {
	if err := removeOpenGates(nsName, lockPrefix, "open"); err != nil {
		return fmt.Errorf("remove open locks in %s: %w", nsName, err)
	}
	return nil
}

// Locked reports whether a closed lock is in the namespace.
func Locked(nsName string) (bool, error) {
	locked := false
	err := forGates(nsName, lockPrefix, "open", func(_ *nftables.Conn, _ *nftables.Table, open bool) (bool, error) {
		locked = locked || !open
		return false, nil
	})
	return locked, err
}

// RemoveCRIULocks deletes the nftables tables CRIU leaves in a namespace
// after a TCP dump (named CRIU-*). After a restore into the same namespace
// CRIU removes only the lock of the restoring process, not the dump's.
func RemoveCRIULocks(nsName string) error {
	return deleteTables(nsName, func(t *nftables.Table) bool { return strings.HasPrefix(t.Name, "CRIU-") })
}

func deleteTables(nsName string, match func(*nftables.Table) bool) error {
	c, done, err := nftConn(nsName)
	if err != nil {
		return err
	}
	defer done()
	ts, err := c.ListTables()
	if err != nil {
		return fmt.Errorf("list nftables tables in %s: %w", nsName, err)
	}
	n := 0
	for _, t := range ts {
		if match(t) {
			c.DelTable(t)
			n++
		}
	}
	if n == 0 {
		return nil
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("delete nftables tables in %s: %w", nsName, err)
	}
	return nil
}

// Tables lists the names of the nftables tables in a namespace.
func Tables(nsName string) ([]string, error) {
	c, done, err := nftConn(nsName)
	if err != nil {
		return nil, err
	}
	defer done()
	ts, err := c.ListTables()
	if err != nil {
		return nil, fmt.Errorf("list nftables tables in %s: %w", nsName, err)
	}
	names := make([]string, 0, len(ts))
	for _, t := range ts {
		names = append(names, t.Name)
	}
	return names, nil
}
