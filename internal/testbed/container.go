package testbed

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"

	"github.com/containerflow/containerflow/internal/cnet"
	"github.com/containerflow/containerflow/internal/nsrun"
)

// ContainerNet is a container's network namespace on a host: one macvlan
// interface (eth0) on the host's uplink with a fixed IP and MAC.
type ContainerNet struct {
	Host  string           `json:"host"`
	Name  string           `json:"name"`
	Netns string           `json:"netns"`
	IP    netip.Addr       `json:"ip"`
	MAC   net.HardwareAddr `json:"mac"`
}

// NetnsPath is the bind-mount path runc and CRIU take for the namespace.
func (c ContainerNet) NetnsPath() string { return nsrun.Path(c.Netns) }

func (tb *Testbed) containerNetns(host, name string) string {
	return tb.Prefix + "-" + host + "-" + name
}

// AddContainerNet creates the network namespace of container name on host,
// with address ip and MAC mac (nil: derived from ip). It does not steer any
// traffic to it: a migration pre-stages the destination's namespace while
// the switch still points at the source, then calls Steer.
func (tb *Testbed) AddContainerNet(host, name string, ip netip.Addr, mac net.HardwareAddr) (*ContainerNet, error) {
	if !tb.IsHost(host) {
		return nil, tb.notHost(host)
	}
	if err := ValidateContainerName(name); err != nil {
		return nil, err
	}
	if err := ValidateContainerIP(ip); err != nil {
		return nil, err
	}
	if mac == nil {
		mac = ContainerMAC(ip)
	}
	if len(mac) != 6 || mac[0]&1 == 1 {
		return nil, fmt.Errorf("%w: MAC %s must be a 6-byte unicast address", ErrBadAddress, mac)
	}
	c := &ContainerNet{Host: host, Name: name, Netns: tb.containerNetns(host, name), IP: ip, MAC: mac}
	hostNs, _ := tb.Netns(host)
	err := cnet.Create(cnet.Config{Netns: c.Netns, HostNetns: hostNs, Uplink: UplinkIf, Addr: netip.PrefixFrom(ip, DataNet.Bits()), MAC: mac})
	if errors.Is(err, cnet.ErrExists) {
		return nil, fmt.Errorf("container %s on %s: %w", name, host, ErrExists)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// RemoveContainerNet kills whatever still runs in the container's namespace
// and deletes it. Removing a namespace that does not exist is not an error.
func (tb *Testbed) RemoveContainerNet(host, name string) error {
	ns, err := tb.Netns(host + "/" + name)
	if err != nil {
		return err
	}
	return cnet.Delete(ns)
}

// ContainerNets lists the container namespaces on host, sorted by name.
func (tb *Testbed) ContainerNets(host string) ([]string, error) {
	if !tb.IsHost(host) {
		return nil, tb.notHost(host)
	}
	pfx := tb.Prefix + "-" + host + "-"
	names, err := nsrun.List(pfx)
	if err != nil {
		return nil, err
	}
	for i := range names {
		names[i] = strings.TrimPrefix(names[i], pfx)
	}
	sort.Strings(names)
	return names, nil
}

// Steer points the switch at host for the address ip/mac: from now on
// frames for it leave through host's port, and only that port.
//
//   - Bridge: one static FDB entry for mac, replaced in place.
//   - eBPF switch: one MoveAddress of ip (forward view with mac as the
//     destination-MAC rewrite, and arp_forward view, in one map update):
//     through the switch controller's API when one runs (so its desired
//     state follows), else straight into the pinned tables.
func (tb *Testbed) Steer(ip netip.Addr, mac net.HardwareAddr, host string) error {
	if !tb.IsHost(host) {
		return tb.notHost(host)
	}
	spec, _ := tb.Spec(host)
	if mac == nil {
		mac = ContainerMAC(ip)
	}
	if tb.Switch == SwitchEBPF {
		return tb.steerEBPF(ip, mac, spec)
	}
	sw, done, err := tb.handle(Switch)
	if err != nil {
		return err
	}
	defer done()
	return setFDB(sw, spec.DataPort(), mac)
}
