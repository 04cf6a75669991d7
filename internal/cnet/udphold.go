package cnet

import (
	"fmt"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// A UDP hold takes every UDP datagram entering a namespace: each is copied
// to user space through NFLOG group UDPHoldGroup, then dropped, in one
// rule, so a datagram is either delivered to the container or held, never
// both. Like a lock it is a table of its own (udpHoldPrefix + a serial),
// released by adding an element to its "released" set (see lockPrefix),
// and removed later, off the frozen path.
const udpHoldPrefix = "cflow_udphold_"

// UDPHoldGroup is the NFLOG group the hold logs to (groups are per
// network namespace).
const UDPHoldGroup = 7373

// HoldUDP makes the namespace take every UDP datagram addressed to it.
// Its chain runs before Lock's, so a lock added later does not hide
// datagrams from it.
func HoldUDP(nsName string) error {
	c, done, err := nftConn(nsName)
	if err != nil {
		return err
	}
	defer done()
	name := fmt.Sprintf("%s%d_%d", udpHoldPrefix, time.Now().UnixNano(), lockSerial.Add(1))
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: name})
	released := &nftables.Set{Table: t, Name: "released", KeyType: nftables.TypeInteger}
	if err := c.AddSet(released, nil); err != nil {
		return fmt.Errorf("hold UDP in %s: %w", nsName, err)
	}
	accept := nftables.ChainPolicyAccept
	prio := nftables.ChainPriority(-310)
	chain := c.AddChain(&nftables.Chain{Name: "in", Table: t, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookInput, Priority: &prio, Policy: &accept})
	c.AddRule(&nftables.Rule{Table: t, Chain: chain, Exprs: []expr.Any{
		&expr.Immediate{Register: 1, Data: openKey},
		&expr.Lookup{SourceRegister: 1, SetName: released.Name, SetID: released.ID},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}})
	c.AddRule(&nftables.Rule{Table: t, Chain: chain, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		// A queue threshold of 1: each datagram goes up at once.
		&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_QTHRESHOLD, Group: UDPHoldGroup, QThreshold: 1},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("hold UDP in %s: %w", nsName, err)
	}
	return nil
}

// ReleaseUDP ends every hold of the namespace (adding only: fast);
// releasing an unheld namespace is fine.
func ReleaseUDP(nsName string) error {
	if err := openGates(nsName, udpHoldPrefix, "released"); err != nil {
		return fmt.Errorf("release UDP in %s: %w", nsName, err)
	}
	return nil
}

// RemoveReleasedUDPHolds removes the holds ReleaseUDP ended (slow: off
// the frozen path).
func RemoveReleasedUDPHolds(nsName string) error {
	if err := removeOpenGates(nsName, udpHoldPrefix, "released"); err != nil {
		return fmt.Errorf("remove released UDP holds in %s: %w", nsName, err)
	}
	return nil
}

// Tidy removes what opened locks and released holds leave in a namespace;
// it is slow (see lockPrefix) and safe at any time.
func Tidy(nsName string) error {
	err := RemoveOpenLocks(nsName)
	if herr := RemoveReleasedUDPHolds(nsName); err == nil {
		err = herr
	}
	return err
}
