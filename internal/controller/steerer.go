package controller

import (
	"context"
	"fmt"
	"net"
	"net/netip"
)

// Steerer points the switch at a host through the controller's API: it
// implements the agents' Steerer interface. The host name is sent as the
// port reference, so the controller's configuration (ports named after the
// hosts they lead to) decides the port; Ports overrides that for hosts
// whose port has another name. The move goes through the batch endpoint,
// all-or-nothing, as one move_address operation, which the controller
// applies as one table update of both views (forward and ARP).
type Steerer struct {
	Client *Client
	// Ports maps host names to switch ports; hosts not in it are sent as
	// port names.
	Ports map[string]PortRef
	// RewriteMAC sets the destination-MAC rewrite to the container's MAC,
	// as the seed's /updateForward with dst_mac did.
	RewriteMAC bool
}

// Steer moves ip (both views) to host's port.
func (s *Steerer) Steer(ctx context.Context, ip netip.Addr, mac net.HardwareAddr, host string) error {
	port, ok := s.Ports[host]
	if !ok {
		port = PortRef(host)
	}
	var dst net.HardwareAddr
	if s.RewriteMAC {
		dst = mac
	}
	op := Op{Op: "move_address", IP: ip.String(), Port: port}
	if dst != nil {
		op.DstMAC = dst.String()
	}
	if err := s.Client.Batch(ctx, op); err != nil {
		return fmt.Errorf("steer %s to %s: %w", ip, host, err)
	}
	return nil
}
