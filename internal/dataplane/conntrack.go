package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Flow is a connection-table entry: a flow that entered through a VIP and
// the member it was given.
type Flow struct {
	Proto   Proto
	Client  netip.AddrPort // client address and port (ICMP: echo id)
	VIP     netip.AddrPort // service address and port (ICMP: 0)
	Member  netip.AddrPort // member address and port the flow is sent to
	Packets uint64         // client packets of the flow
	Bytes   uint64
	Idle    time.Duration // since the flow's last client packet
}

func monotonicNow() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return uint64(ts.Nano())
}

func decodeFlow(k bpfFlowKey, v bpfCtEntry, now uint64) Flow {
	f := Flow{
		Proto:   Proto(k.Proto),
		Client:  netip.AddrPortFrom(keyAddr(k.Saddr), netPort(k.Sport)),
		VIP:     netip.AddrPortFrom(keyAddr(k.Daddr), netPort(k.Dport)),
		Member:  netip.AddrPortFrom(keyAddr(v.MemberAddr), netPort(v.MemberPort)),
		Packets: v.Packets,
		Bytes:   v.Bytes,
	}
	if now > v.LastSeenNs {
		f.Idle = time.Duration(now - v.LastSeenNs)
	}
	return f
}

// Conntrack lists the connection table.
func (d *Dataplane) Conntrack() ([]Flow, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.checkOpen(); err != nil {
		return nil, err
	}
	flows, _, err := d.flowsLocked()
	return flows, err
}

func (d *Dataplane) flowsLocked() ([]Flow, []bpfFlowKey, error) {
	var (
		k     bpfFlowKey
		v     bpfCtEntry
		flows []Flow
		keys  []bpfFlowKey
	)
	now := monotonicNow()
	it := d.objs.Conntrack.Iterate()
	for it.Next(&k, &v) {
		flows = append(flows, decodeFlow(k, v, now))
		keys = append(keys, k)
	}
	if err := it.Err(); err != nil {
		return nil, nil, fmt.Errorf("list conntrack: %w", err)
	}
	idx := make([]int, len(flows))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool {
		fa, fb := flows[idx[a]], flows[idx[b]]
		if c := fa.VIP.Compare(fb.VIP); c != 0 {
			return c < 0
		}
		return fa.Client.Compare(fb.Client) < 0
	})
	sf := make([]Flow, len(flows))
	sk := make([]bpfFlowKey, len(keys))
	for i, j := range idx {
		sf[i], sk[i] = flows[j], keys[j]
	}
	return sf, sk, nil
}

// DeleteFlows removes the flows for which match returns true, with their
// reverse-NAT entries, and returns how many it removed. A removed flow that
// is still active is given a member afresh by its next packet.
func (d *Dataplane) DeleteFlows(match func(Flow) bool) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.checkOpen(); err != nil {
		return 0, err
	}
	return d.deleteFlowsLocked(match)
}

func (d *Dataplane) deleteFlowsLocked(match func(Flow) bool) (int, error) {
	flows, keys, err := d.flowsLocked()
	if err != nil {
		return 0, err
	}
	n := 0
	for i, f := range flows {
		if !match(f) {
			continue
		}
		k := keys[i]
		if err := d.objs.Conntrack.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return n, mapErr("delete flow", err)
		}
		mk, _ := addrKey("member", f.Member.Addr())
		rk := bpfFlowKey{Saddr: mk, Daddr: k.Saddr, Sport: netPort(f.Member.Port()), Dport: k.Sport, Proto: k.Proto}
		if err := d.objs.ReverseNat.Delete(&rk); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return n, mapErr("delete reverse nat entry", err)
		}
		n++
	}
	return n, nil
}
