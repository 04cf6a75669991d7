package cnet

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/containerflow/containerflow/internal/nsrun"
)

// IfName is the container-side interface name.
const IfName = "eth0"

// ErrExists is returned when the namespace already exists.
var ErrExists = nsrun.ErrExists

// Config describes a container's network.
type Config struct {
	Netns     string           // namespace name (under /run/netns)
	HostNetns string           // namespace holding the uplink; "" means the caller's
	Uplink    string           // uplink interface in HostNetns, parent of the macvlan
	Addr      netip.Prefix     // address with the data network's prefix length
	MAC       net.HardwareAddr // fixed MAC
}

// Create builds the namespace with loopback up, IPv6 off and the macvlan
// configured and up. On failure nothing is left behind.
func Create(c Config) (err error) {
	if len(c.MAC) != 6 || c.MAC[0]&1 == 1 {
		return fmt.Errorf("container MAC %s must be a 6-byte unicast address", c.MAC)
	}
	if !c.Addr.Addr().Is4() {
		return fmt.Errorf("container address %s must be IPv4", c.Addr)
	}
	if err := nsrun.Create(c.Netns); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = nsrun.Delete(c.Netns)
		}
	}()
	if err := Quiet(c.Netns); err != nil {
		return err
	}
	hh, hclose, err := handleFor(c.HostNetns)
	if err != nil {
		return err
	}
	defer hclose()
	uplink, err := hh.LinkByName(c.Uplink)
	if err != nil {
		return fmt.Errorf("find uplink %s: %w", c.Uplink, err)
	}
	cns, err := netns.GetFromPath(nsrun.Path(c.Netns))
	if err != nil {
		return err
	}
	defer cns.Close()
	// Created directly inside the container namespace so its name cannot
	// clash with anything on the host.
	mv := &netlink.Macvlan{
		LinkAttrs: netlink.LinkAttrs{Name: IfName, ParentIndex: uplink.Attrs().Index, HardwareAddr: c.MAC, Namespace: netlink.NsFd(cns)},
		Mode:      netlink.MACVLAN_MODE_BRIDGE,
	}
	if err := hh.LinkAdd(mv); err != nil {
		return fmt.Errorf("add macvlan on %s for %s: %w", c.Uplink, c.Netns, err)
	}
	ch, err := netlink.NewHandleAt(cns)
	if err != nil {
		return err
	}
	defer ch.Close()
	l, err := ch.LinkByName(IfName)
	if err != nil {
		return err
	}
	if err := AddAddr(ch, l, c.Addr); err != nil {
		return err
	}
	if err := ch.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up in %s: %w", IfName, c.Netns, err)
	}
	return nil
}

// Delete kills what runs in the namespace and removes it (idempotent).
// The macvlan is deleted explicitly first: the kernel tears a namespace
// down asynchronously, and until it has, a new macvlan with the same MAC
// on the same uplink fails with EADDRINUSE.
func Delete(nsName string) error {
	if !nsrun.Exists(nsName) {
		return nil
	}
	if err := nsrun.KillAll(nsName, 3*time.Second); err != nil {
		return err
	}
	_ = nsrun.Do(nsName, func() error {
		l, err := netlink.LinkByName(IfName)
		if err != nil {
			return err
		}
		return netlink.LinkDel(l)
	})
	return nsrun.Delete(nsName)
}

// Quiet brings loopback up and turns IPv6 off in a namespace. Loopback
// matters beyond tidiness: CRIU's feature probe connects over it.
func Quiet(ns string) error {
	for _, k := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
		if err := nsrun.Sysctl(ns, k, "1"); err != nil {
			return err
		}
	}
	return nsrun.Do(ns, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	})
}

// AddAddr assigns an IPv4 prefix to a link.
func AddAddr(h *netlink.Handle, l netlink.Link, p netip.Prefix) error {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}
	if err := h.AddrAdd(l, a); err != nil {
		return fmt.Errorf("add %s to %s: %w", p, l.Attrs().Name, err)
	}
	return nil
}

func handleFor(ns string) (*netlink.Handle, func(), error) {
	if ns == "" {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, nil, err
		}
		return h, h.Close, nil
	}
	nh, err := netns.GetFromPath(nsrun.Path(ns))
	if err != nil {
		return nil, nil, fmt.Errorf("open netns %s: %w", ns, err)
	}
	h, err := netlink.NewHandleAt(nh)
	if err != nil {
		nh.Close()
		return nil, nil, err
	}
	return h, func() { h.Close(); nh.Close() }, nil
}
