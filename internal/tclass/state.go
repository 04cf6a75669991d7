package tclass

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/containerflow/containerflow/internal/nsrun"
)

// State is what the kernel has on an interface, read back through netlink.
type State struct {
	// Installed: the root qdisc is Install's (htb, handle cf:).
	Installed bool `json:"installed"`
	// RootQdiscs counts root qdiscs of any kind (one, or none for a
	// noqueue device); HTBQdiscs the htb qdiscs anywhere on the device.
	RootQdiscs int `json:"root_qdiscs"`
	HTBQdiscs  int `json:"htb_qdiscs"`
	// Classes by handle (cf:1, cf:10, cf:20) and any other.
	Parent    *Class `json:"parent,omitempty"`
	Live      *Class `json:"live,omitempty"`
	Migration *Class `json:"migration,omitempty"`
	Other     int    `json:"other_classes"`
	// Filters: u32 filters at the root qdisc sending to the migration
	// class, by protocol, and every filter there.
	MigrationFiltersIPv4 int `json:"migration_filters_ipv4"`
	MigrationFiltersIPv6 int `json:"migration_filters_ipv6"`
	Filters              int `json:"filters"`
}

// Class is one HTB class with its counters.
type Class struct {
	Rate    uint64 `json:"rate_bps"` // bits/s
	Ceil    uint64 `json:"ceil_bps"`
	Prio    uint32 `json:"prio"`
	Bytes   uint64 `json:"bytes"`
	Packets uint32 `json:"packets"`
}

// Read returns the qdiscs, classes and filters of ifname in ns.
func Read(ns, ifname string) (*State, error) {
	st := &State{}
	err := nsrun.Do(ns, func() error {
		link, err := netlink.LinkByName(ifname)
		if err != nil {
			return fmt.Errorf("tclass: %s: %w", ifname, err)
		}
		qs, err := netlink.QdiscList(link)
		if err != nil {
			return err
		}
		for _, q := range qs {
			a := q.Attrs()
			if a.Parent == netlink.HANDLE_ROOT {
				st.RootQdiscs++
				if a.Handle == QdiscHandle && q.Type() == "htb" {
					st.Installed = true
				}
			}
			if q.Type() == "htb" {
				st.HTBQdiscs++
			}
		}
		if !st.Installed {
			return nil
		}
		cs, err := netlink.ClassList(link, 0)
		if err != nil {
			return err
		}
		for _, c := range cs {
			h, ok := c.(*netlink.HtbClass)
			if !ok {
				st.Other++
				continue
			}
			k := &Class{Rate: h.Rate * 8, Ceil: h.Ceil * 8, Prio: h.Prio}
			if s := h.Statistics; s != nil && s.Basic != nil {
				k.Bytes, k.Packets = s.Basic.Bytes, s.Basic.Packets
			}
			switch h.Handle {
			case ParentClass:
				st.Parent = k
			case LiveClass:
				st.Live = k
			case MigrationClass:
				st.Migration = k
			default:
				st.Other++
			}
		}
		fs, err := netlink.FilterList(link, QdiscHandle)
		if err != nil {
			return err
		}
		for _, f := range fs {
			st.Filters++
			u, ok := f.(*netlink.U32)
			if !ok || u.ClassId != MigrationClass {
				continue
			}
			switch u.Protocol {
			case unix.ETH_P_IP:
				st.MigrationFiltersIPv4++
			case unix.ETH_P_IPV6:
				st.MigrationFiltersIPv6++
			}
		}
		return nil
	})
	return st, err
}
