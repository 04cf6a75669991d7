package tclass

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/containerflow/containerflow/internal/nsrun"
)

// Handles of what Install makes. The major 0xcf marks the root qdisc as
// this package's: Remove deletes a root qdisc only when it has it, so an
// operator's own qdisc is never taken away by an agent started without
// --link-rate.
var (
	QdiscHandle    = netlink.MakeHandle(0xcf, 0)
	ParentClass    = netlink.MakeHandle(0xcf, 1)
	LiveClass      = netlink.MakeHandle(0xcf, 0x10)
	MigrationClass = netlink.MakeHandle(0xcf, 0x20)
)

// Filter priorities, one u32 classifier per protocol, so Install can
// replace each by deleting its priority and adding it again (a u32
// filter added without an explicit handle would otherwise stack).
const (
	filterPrioIPv4 = 1
	filterPrioIPv6 = 2
)

// MigrationShare is the part of the link the migration class is
// guaranteed when live traffic wants all of it. Not zero: a container
// being migrated is frozen while its image crosses, so a starved image
// stream would stretch its downtime without bound (and the freeze would
// end in a timeout and a rollback). A tenth bounds that stretch to ten
// times the uncontended transfer while leaving live traffic nine tenths.
const MigrationShare = 0.10

// MinRate is the lowest link rate Install accepts (bits/s): below it the
// migration class's share is too small to carry an image in any useful
// time.
const MinRate = 1_000_000

// quantum is the HTB quantum of the classes, in bytes. The leaves differ in
// priority, so it never splits bandwidth between them; set explicitly
// only to keep the kernel from deriving a huge one from a fast rate
// (and warning about it).
const quantum = 64 << 10

// Config is what Install sets up.
type Config struct {
	Rate uint64 // the link's rate, bits/s
	// DSCP that the filters send to the migration class; when it does
	// not mark (Marks false), no filter is installed and every packet
	// is live.
	DSCP int
}

// Install puts the classes on ifname in namespace ns ("" = the caller's),
// or brings those an earlier Install made to cfg without recreating the
// qdisc: an agent restart must neither stack qdiscs nor drop what is
// queued. Any other root qdisc on the interface is replaced.
func Install(ns, ifname string, cfg Config) error {
	if cfg.Rate < MinRate {
		return fmt.Errorf("link rate %d bit/s: at least %d", cfg.Rate, MinRate)
	}
	if cfg.DSCP != -1 && !Marks(cfg.DSCP) {
		return fmt.Errorf("tclass: %w", CheckDSCP(cfg.DSCP))
	}
	return nsrun.Do(ns, func() error {
		link, err := netlink.LinkByName(ifname)
		if err != nil {
			return fmt.Errorf("tclass: uplink %s: %w", ifname, err)
		}
		idx := link.Attrs().Index
		ours, err := hasRoot(link)
		if err != nil {
			return err
		}
		// HTB cannot be changed in place (the kernel refuses): ours is
		// kept as it is, its classes and filters brought to cfg below;
		// anything else is replaced.
		if !ours {
			q := netlink.NewHtb(netlink.QdiscAttrs{LinkIndex: idx, Handle: QdiscHandle, Parent: netlink.HANDLE_ROOT})
			q.Defcls = LiveClass & 0xffff // unclassified packets are live
			if err := netlink.QdiscReplace(q); err != nil {
				return fmt.Errorf("tclass: htb root on %s: %w", ifname, err)
			}
		}
		mig := uint64(float64(cfg.Rate) * MigrationShare)
		classes := []*netlink.HtbClass{
			netlink.NewHtbClass(netlink.ClassAttrs{LinkIndex: idx, Parent: QdiscHandle, Handle: ParentClass},
				netlink.HtbClassAttrs{Rate: cfg.Rate, Ceil: cfg.Rate, Quantum: quantum}),
			netlink.NewHtbClass(netlink.ClassAttrs{LinkIndex: idx, Parent: ParentClass, Handle: LiveClass},
				netlink.HtbClassAttrs{Rate: cfg.Rate - mig, Ceil: cfg.Rate, Prio: 0, Quantum: quantum}),
			netlink.NewHtbClass(netlink.ClassAttrs{LinkIndex: idx, Parent: ParentClass, Handle: MigrationClass},
				netlink.HtbClassAttrs{Rate: mig, Ceil: cfg.Rate, Prio: 1, Quantum: quantum}),
		}
		for _, c := range classes {
			if err := netlink.ClassReplace(c); err != nil {
				return fmt.Errorf("tclass: class %s on %s: %w", netlink.HandleStr(c.Handle), ifname, err)
			}
		}
		return setFilters(idx, ifname, cfg.DSCP)
	})
}

// SetFilters installs (dscp marks) or removes (it does not) the filters
// of an installed qdisc, leaving qdisc and classes alone: with none,
// every packet is live. `cflow bench evacuate --compare-class` switches
// the class off and on with it.
func SetFilters(ns, ifname string, dscp int) error {
	return nsrun.Do(ns, func() error {
		link, err := netlink.LinkByName(ifname)
		if err != nil {
			return fmt.Errorf("tclass: uplink %s: %w", ifname, err)
		}
		return setFilters(link.Attrs().Index, ifname, dscp)
	})
}

func setFilters(idx int, ifname string, dscp int) error {
	for _, f := range filters(idx, dscp) {
		// Deleting the priority deletes its whole classifier, whatever
		// an earlier run left in it.
		del := &netlink.U32{FilterAttrs: netlink.FilterAttrs{LinkIndex: idx, Parent: QdiscHandle,
			Priority: f.Priority, Protocol: f.Protocol}}
		if err := netlink.FilterDel(del); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("tclass: remove filter prio %d on %s: %w", f.Priority, ifname, err)
		}
		if !Marks(dscp) {
			continue
		}
		if err := netlink.FilterAdd(f); err != nil {
			return fmt.Errorf("tclass: filter prio %d on %s: %w", f.Priority, ifname, err)
		}
	}
	return nil
}

// filters match the DSCP bits of the IPv4 TOS byte and of the IPv6
// traffic class (bits 4-11 of the first header word) and send the packet
// to the migration class.
func filters(idx int, dscp int) []*netlink.U32 {
	d := uint32(dscp & 0x3f)
	mk := func(prio uint16, proto uint16, mask, val uint32) *netlink.U32 {
		return &netlink.U32{
			FilterAttrs: netlink.FilterAttrs{LinkIndex: idx, Parent: QdiscHandle, Priority: prio, Protocol: proto},
			ClassId:     MigrationClass,
			Sel: &netlink.TcU32Sel{Flags: netlink.TC_U32_TERMINAL,
				Keys: []netlink.TcU32Key{{Mask: mask, Val: val, Off: 0}}},
		}
	}
	return []*netlink.U32{
		mk(filterPrioIPv4, unix.ETH_P_IP, 0x00fc0000, d<<18),
		mk(filterPrioIPv6, unix.ETH_P_IPV6, 0x0fc00000, d<<22),
	}
}

// Remove deletes the root qdisc of ifname if Install made it (and with it
// its classes and filters); it reports whether there was one.
func Remove(ns, ifname string) (bool, error) {
	removed := false
	err := nsrun.Do(ns, func() error {
		link, err := netlink.LinkByName(ifname)
		if errors.As(err, new(netlink.LinkNotFoundError)) {
			return nil // no interface, nothing of ours on it
		}
		if err != nil {
			return fmt.Errorf("tclass: uplink %s: %w", ifname, err)
		}
		q, err := ourRoot(link)
		if err != nil || q == nil {
			return err
		}
		if err := netlink.QdiscDel(q); err != nil {
			return fmt.Errorf("tclass: remove root qdisc of %s: %w", ifname, err)
		}
		removed = true
		return nil
	})
	return removed, err
}

// ourRoot returns the link's root qdisc if Install made it, else nil.
func ourRoot(link netlink.Link) (netlink.Qdisc, error) {
	qs, err := netlink.QdiscList(link)
	if err != nil {
		return nil, fmt.Errorf("tclass: qdiscs of %s: %w", link.Attrs().Name, err)
	}
	for _, q := range qs {
		a := q.Attrs()
		if a.Parent == netlink.HANDLE_ROOT && a.Handle == QdiscHandle && q.Type() == "htb" {
			return q, nil
		}
	}
	return nil, nil
}

func hasRoot(link netlink.Link) (bool, error) {
	q, err := ourRoot(link)
	return q != nil, err
}
