package testbed

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
)

// Node names. Hosts run containers; the client runs load generators; the
// switch forwards between them.
const (
	Switch = "switch"
	HostA  = "hostA"
	HostB  = "hostB"
	Client = "client"
)

// Addressing plan. The /24s are inside 198.18.0.0/15 (RFC 2544 benchmarking).
var (
	DataNet = netip.MustParsePrefix("198.18.0.0/24")
	MgmtNet = netip.MustParsePrefix("198.19.0.0/24")
	// SwitchMgmtIP is where the switch namespace (its controller) listens.
	SwitchMgmtIP = netip.MustParseAddr("198.19.0.1")
)

// Interface names. Inside a node the uplink is always eth0 and the
// management link mgmt0; in the switch namespace ports are named after the
// node they lead to.
const (
	UplinkIf     = "eth0"
	MgmtIf       = "mgmt0"
	DataBridge   = "br0"
	MgmtBridge   = "mgmt"
	ContainerIf  = "eth0"
	dataPortPfx  = "sw-"
	mgmtPortPfx  = "mg-"
	prefixMaxLen = 8
)

// NodeSpec is the fixed plan for one edge node of the testbed.
type NodeSpec struct {
	Name   string
	Port   uint32 // switch port number (the seed's sw_port)
	DataIP netip.Addr
	MAC    net.HardwareAddr
	MgmtIP netip.Addr
}

// DataPort is the node's port interface in the switch namespace.
func (n NodeSpec) DataPort() string { return dataPortPfx + n.Name }

// MgmtPort is the node's management port in the switch namespace.
func (n NodeSpec) MgmtPort() string { return mgmtPortPfx + n.Name }

// Nodes is the plan of the edge nodes, in switch port order.
var Nodes = []NodeSpec{
	{Name: HostA, Port: 1, DataIP: netip.MustParseAddr("198.18.0.11"), MAC: mustMAC("02:cf:00:00:00:0b"), MgmtIP: netip.MustParseAddr("198.19.0.11")},
	{Name: HostB, Port: 2, DataIP: netip.MustParseAddr("198.18.0.12"), MAC: mustMAC("02:cf:00:00:00:0c"), MgmtIP: netip.MustParseAddr("198.19.0.12")},
	{Name: Client, Port: 3, DataIP: netip.MustParseAddr("198.18.0.100"), MAC: mustMAC("02:cf:00:00:00:64"), MgmtIP: netip.MustParseAddr("198.19.0.100")},
}

// Hosts are the nodes that run containers.
var Hosts = []string{HostA, HostB}

// Spec returns the plan of an edge node.
func Spec(node string) (NodeSpec, error) {
	for _, n := range Nodes {
		if n.Name == node {
			return n, nil
		}
	}
	return NodeSpec{}, fmt.Errorf("%w: %q (nodes: switch, hostA, hostB, client)", ErrUnknownNode, node)
}

// IsHost reports whether node runs containers.
func IsHost(node string) bool { return node == HostA || node == HostB }

// ContainerMAC derives the default MAC of a container from its IPv4 address
// the way the seed did (02:42 followed by the four address bytes), so the
// same IP always gets the same MAC on every host.
func ContainerMAC(ip netip.Addr) net.HardwareAddr {
	b := ip.As4()
	return net.HardwareAddr{0x02, 0x42, b[0], b[1], b[2], b[3]}
}

var (
	prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,7}$`)
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.]{0,31}$`)
)

// ValidatePrefix checks a testbed prefix: 1-8 lowercase letters or digits,
// starting with a letter and without '-', so "PREFIX-" identifies exactly
// one testbed's namespaces.
func ValidatePrefix(p string) error {
	if !prefixRE.MatchString(p) {
		return fmt.Errorf("%w: %q (want 1-%d lowercase letters/digits, starting with a letter)", ErrBadPrefix, p, prefixMaxLen)
	}
	return nil
}

// ValidateContainerName checks a container name used in namespace names.
func ValidateContainerName(n string) error {
	if !nameRE.MatchString(n) {
		return fmt.Errorf("%w: %q (want 1-32 of A-Z a-z 0-9 _ ., no '-')", ErrBadName, n)
	}
	return nil
}

// ValidateContainerIP checks that a container address is a usable host
// address on the data network that no testbed node already uses.
func ValidateContainerIP(ip netip.Addr) error {
	if !ip.Is4() || !DataNet.Contains(ip) || ip == DataNet.Addr() || ip == netip.MustParseAddr("198.18.0.255") {
		return fmt.Errorf("%w: %s is not a host address in %s", ErrBadAddress, ip, DataNet)
	}
	for _, n := range Nodes {
		if n.DataIP == ip {
			return fmt.Errorf("%w: %s belongs to node %s", ErrBadAddress, ip, n.Name)
		}
	}
	return nil
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}
