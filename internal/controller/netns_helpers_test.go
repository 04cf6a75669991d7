package controller_test

import (
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/containerflow/containerflow/internal/nsrun"
)

func nsHandle(name string) (*netlink.Handle, error) {
	h, err := netns.GetFromPath(nsrun.Path(name))
	if err != nil {
		return nil, err
	}
	defer h.Close()
	return netlink.NewHandleAt(h)
}

func netnsFd(name string) (*os.File, error) { return os.Open(nsrun.Path(name)) }

func netipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}
