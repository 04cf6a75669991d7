package testbed

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

// Node names. Hosts run containers; the client runs load generators; the
// switch forwards between them.
const (
	Switch = "switch"
	HostA  = "hostA"
	HostB  = "hostB"
	Client = "client"
)

// Addressing plan (nodes: PlanNodes). The /24s are inside 198.18.0.0/15 (RFC 2544 benchmarking).
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

// How many hosts a testbed may have (Config.Hosts, `testbed up --hosts`).
// The upper bound keeps every host's addresses in .203-.216, clear of the
// container addresses tests and benches use (.2-.100).
const (
	DefaultHosts = 2
	MinHosts     = 2
	MaxHosts     = 16
)

// Address plan of the extra hosts (hostC and later). hostA and hostB keep
// the seed's .11 and .12, and the client .100; the i-th host (hostA is 1)
// from hostC on gets .200+i on both networks (hostC .203, hostP .216), a MAC
// ending in the same byte, and the next switch port after the client's
// (hostC 4, hostP 17). A host's plan does not depend on how many hosts its
// testbed has: hostC is the same in a testbed of 3 or of 16.
const (
	extraHostOctet = 200
	firstExtraPort = 4
)

// Nodes is the plan of the edge nodes of the default testbed (two hosts),
// in switch port order. A testbed's own nodes are tb.Nodes().
var Nodes = []NodeSpec{
	{Name: HostA, Port: 1, DataIP: netip.MustParseAddr("198.18.0.11"), MAC: mustMAC("02:cf:00:00:00:0b"), MgmtIP: netip.MustParseAddr("198.19.0.11")},
	{Name: HostB, Port: 2, DataIP: netip.MustParseAddr("198.18.0.12"), MAC: mustMAC("02:cf:00:00:00:0c"), MgmtIP: netip.MustParseAddr("198.19.0.12")},
	{Name: Client, Port: 3, DataIP: netip.MustParseAddr("198.18.0.100"), MAC: mustMAC("02:cf:00:00:00:64"), MgmtIP: netip.MustParseAddr("198.19.0.100")},
}

// Hosts are the hosts of the default testbed. A testbed's own are
// tb.Hosts().
var Hosts = []string{HostA, HostB}

// ValidateHosts checks a testbed's number of hosts.
func ValidateHosts(n int) error {
	if n < MinHosts || n > MaxHosts {
		return fmt.Errorf("%w: %d (a testbed has %d to %d hosts)", ErrBadHosts, n, MinHosts, MaxHosts)
	}
	return nil
}

// HostNames are the names of the hosts of a testbed with n hosts: hostA,
// hostB, hostC, ...
func HostNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = hostName(i)
	}
	return names
}

// hostName is the name of the i-th host, counting hostA as 0.
func hostName(i int) string { return "host" + string(rune('A'+i)) }

// PlanNodes is the plan of the edge nodes of a testbed with n hosts, in
// switch port order: hostA, hostB, client, then hostC, hostD, ... The plan
// for DefaultHosts is Nodes.
func PlanNodes(n int) ([]NodeSpec, error) {
	if err := ValidateHosts(n); err != nil {
		return nil, err
	}
	nodes := append([]NodeSpec(nil), Nodes...)
	for i := len(Hosts); i < n; i++ {
		octet := byte(extraHostOctet + i + 1)
		nodes = append(nodes, NodeSpec{
			Name:   hostName(i),
			Port:   uint32(firstExtraPort + i - len(Hosts)),
			DataIP: netip.AddrFrom4([4]byte{198, 18, 0, octet}),
			MAC:    net.HardwareAddr{0x02, 0xcf, 0, 0, 0, octet},
			MgmtIP: netip.AddrFrom4([4]byte{198, 19, 0, octet}),
		})
	}
	return nodes, nil
}

// maxPlan is every node any testbed can have.
var maxPlan = func() []NodeSpec {
	n, err := PlanNodes(MaxHosts)
	if err != nil {
		panic(err)
	}
	return n
}()

// Spec returns the plan of an edge node of the default testbed. Whether a
// given testbed has a node is tb.Spec's question; PlannedSpec knows the
// nodes of the largest one.
func Spec(node string) (NodeSpec, error) {
	return findSpec(Nodes, node)
}

// PlannedSpec returns the plan of a node that some testbed may have (up to
// MaxHosts hosts): where a name is all there is, as for an agent's address
// or a link name given before the testbed is opened.
func PlannedSpec(node string) (NodeSpec, error) {
	return findSpec(maxPlan, node)
}

func findSpec(nodes []NodeSpec, node string) (NodeSpec, error) {
	for _, n := range nodes {
		if n.Name == node {
			return n, nil
		}
	}
	return NodeSpec{}, fmt.Errorf("%w: %q (nodes: switch, %s)", ErrUnknownNode, node, nodeList(nodes))
}

// nodeList names nodes for error messages: "hostA, hostB, client".
func nodeList(nodes []NodeSpec) string {
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Name
	}
	return strings.Join(names, ", ")
}

// IsHost reports whether node is a host of the default testbed; a
// testbed's own: tb.IsHost.
func IsHost(node string) bool { return slices.Contains(Hosts, node) }

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
// address on the data network that is not a node's in any testbed's plan.
func ValidateContainerIP(ip netip.Addr) error {
	if !ip.Is4() || !DataNet.Contains(ip) || ip == DataNet.Addr() || ip == netip.MustParseAddr("198.18.0.255") {
		return fmt.Errorf("%w: %s is not a host address in %s", ErrBadAddress, ip, DataNet)
	}
	// Every planned node's, not only this testbed's: a container keeps
	// its address on whichever testbed it runs.
	for _, n := range maxPlan {
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
