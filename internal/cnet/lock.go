package cnet

import (
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/containerflow/containerflow/internal/nsrun"
)

// lockTable is the nftables table Lock creates. CRIU's own lock tables
// are named CRIU-*, so the two never collide. The tables are managed over
// netlink directly: exec'ing nft cost 10-15 ms per call, on the path
// between the switch update and the container answering again.
const lockTable = "cflow_lock"

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

// Lock makes the namespace drop every IPv4 packet in and out (loopback
// excepted), without touching sockets. It is one netlink transaction.
func Lock(nsName string) error {
	c, done, err := nftConn(nsName)
	if err != nil {
		return err
	}
	defer done()
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: lockTable})
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
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("lock %s: %w", nsName, err)
	}
	return nil
}

// Unlock removes Lock's table; unlocking an unlocked namespace is fine.
func Unlock(nsName string) error {
	return deleteTables(nsName, func(t *nftables.Table) bool { return t.Name == lockTable })
}

// Locked reports whether Lock's table is present.
func Locked(nsName string) (bool, error) {
	names, err := Tables(nsName)
	return slices.Contains(names, lockTable), err
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
