package cnet

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// udpHoldTable takes every UDP datagram entering a namespace: each is
// copied to user space through NFLOG group UDPHoldGroup, then dropped, in
// one rule, so a datagram is either delivered to the container or held,
// never both.
const udpHoldTable = "cflow-udphold"

// UDPHoldGroup is the NFLOG group the hold logs to (groups are per
// network namespace).
const UDPHoldGroup = 7373

// HoldUDP makes the namespace take every UDP datagram addressed to it
// (see udpHoldTable). Its chain runs before Lock's, so a lock added later
// does not hide datagrams from it.
func HoldUDP(nsName string) error {
	c, done, err := nftConn(nsName)
	if err != nil {
		return err
	}
	defer done()
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: udpHoldTable})
	accept := nftables.ChainPolicyAccept
	prio := nftables.ChainPriority(-310)
	chain := c.AddChain(&nftables.Chain{Name: "in", Table: t, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookInput, Priority: &prio, Policy: &accept})
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

// ReleaseUDP removes HoldUDP's table; releasing an unheld namespace is fine.
func ReleaseUDP(nsName string) error {
	return deleteTables(nsName, func(t *nftables.Table) bool { return t.Name == udpHoldTable })
}
