package testbed

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/containerflow/containerflow/internal/cnet"
	"github.com/containerflow/containerflow/internal/mounts"
	"github.com/containerflow/containerflow/internal/nsrun"
	"github.com/containerflow/containerflow/internal/tclass"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// RunDir holds one directory of state per testbed.
const RunDir = "/run/containerflow"

// DefaultPrefix is the prefix used by the CLI when none is given.
const DefaultPrefix = "cf"

// Config selects what Up builds.
type Config struct {
	Prefix string
	// Switch is the data plane between the nodes: SwitchEBPF (the default)
	// or SwitchBridge (a Linux bridge, kept for comparison).
	Switch string
	// AgentBinary, when set, is the cflow binary Up starts the switch
	// controller (`cflow switch serve`, eBPF switch only) and one agent per
	// host (`cflow agent serve`) with.
	AgentBinary string
	// NoAuth starts the controller and the agents without a bearer token:
	// anyone who can reach the management network may write. For the
	// seed's scripts, which send none.
	NoAuth bool
	// PrivateFS runs each agent in a mount namespace of its own with
	// private /tmp, /var/tmp, /dev/shm, /run/netns and state directory,
	// as on hosts that share no filesystem (privfs.go).
	PrivateFS bool
	// Insecure keeps plain HTTP next to mutual TLS: the controller serves
	// the seed's endpoints on ControllerURL (for the seed's scripts) and
	// each agent a plain listener on AgentPlainPort (migrations with
	// transport plain, for comparisons). NoAuth implies it.
	Insecure bool
	// Hosts is how many hosts run containers, MinHosts to MaxHosts; 0 is
	// DefaultHosts (hostA and hostB).
	Hosts int
	// HostCapacity is what each host's agent offers its containers'
	// requests (agent serve --capacity-*): the hosts share one machine,
	// whose whole CPU and memory each would claim otherwise.
	HostCapacity Capacity
	// MigrationNet is the network agents call each other on, so the one
	// checkpoint images cross: MigrationNetMgmt (the default, the
	// management bridge) or MigrationNetData (the hosts' data addresses,
	// through the switch, on the same links as the containers' traffic:
	// a host with one NIC). See mignet.go.
	MigrationNet string
	// LinkRate, in bits/s, is passed to every agent as --link-rate: the
	// rate of its uplink (eth0), which it then schedules with a live and
	// a migration class (package tclass). 0: off.
	LinkRate uint64
}

// Capacity is a host's capacity; zero fields are the machine's.
type Capacity struct {
	CPUs   float64 `json:"cpus,omitempty"`
	Memory string  `json:"memory,omitempty"` // e.g. "4GiB"
}

// Testbed is a handle on a built testbed. It holds no open resources, so it
// can be copied and a handle from Open works like the one from Up.
type Testbed struct {
	Prefix  string    `json:"prefix"`
	Created time.Time `json:"created"`
	// Switch is SwitchEBPF or SwitchBridge.
	Switch string `json:"switch"`
	// NoAuth: the controller and agents accept writes without a token.
	NoAuth bool `json:"no_auth,omitempty"`
	// PrivateFS: each agent has a filesystem view of its own.
	PrivateFS bool `json:"private_fs,omitempty"`
	// TLS: the controller and the agents speak mutual TLS on the
	// management network, with certificates under PKIDir.
	TLS bool `json:"tls,omitempty"`
	// Insecure: see Config.Insecure.
	Insecure bool `json:"insecure,omitempty"`
	// HostCount is how many hosts the testbed has (tb.Hosts names them);
	// 0 in state written before it could have more than DefaultHosts.
	HostCount int `json:"hosts,omitempty"`
	// HostCapacity: see Config.HostCapacity.
	HostCapacity Capacity `json:"host_capacity,omitzero"`
	// MigrationNet: see Config.MigrationNet; "" is the management
	// network (state written before the option existed, and the default).
	MigrationNet string `json:"migration_net,omitempty"`
	// LinkRate: see Config.LinkRate.
	LinkRate uint64 `json:"link_rate_bps,omitempty"`
}

// Hosts are the testbed's hosts: hostA, hostB, ...
func (tb *Testbed) Hosts() []string { return HostNames(tb.hostCount()) }

// Nodes is the plan of the testbed's edge nodes, in switch port order.
func (tb *Testbed) Nodes() []NodeSpec {
	nodes, err := PlanNodes(tb.hostCount())
	if err != nil {
		// Up and Open never hand out such a handle: one made by hand is
		// a programming error, and any plan returned would be a guess.
		panic(fmt.Sprintf("testbed %s: %v", tb.Prefix, err))
	}
	return nodes
}

// IsHost reports whether node is one of the testbed's hosts.
func (tb *Testbed) IsHost(node string) bool {
	return slices.Contains(tb.Hosts(), node)
}

// Spec returns the plan of one of the testbed's edge nodes.
func (tb *Testbed) Spec(node string) (NodeSpec, error) {
	return findSpec(tb.Nodes(), node)
}

func (tb *Testbed) hostCount() int {
	if tb.HostCount == 0 {
		return DefaultHosts
	}
	return tb.HostCount
}

// notHost is the error for a node that is not one of the testbed's hosts.
func (tb *Testbed) notHost(node string) error {
	return fmt.Errorf("%w: %q is not a host of testbed %s (hosts: %s)", ErrUnknownNode, node, tb.Prefix, strings.Join(tb.Hosts(), ", "))
}

// crashAfterStep makes Up stop after that many steps without cleaning up,
// as if the process had been killed; tests use it to prove Down finds
// leftovers. Negative disables it.
var crashAfterStep = -1

var errSimulatedCrash = errors.New("simulated crash")

// Up builds a testbed. On failure it removes whatever it had created, so no
// half-built testbed is left behind.
func Up(cfg Config) (tb *Testbed, err error) {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if err := ValidatePrefix(cfg.Prefix); err != nil {
		return nil, err
	}
	if cfg.Switch == "" {
		cfg.Switch = SwitchEBPF
	}
	if cfg.Switch != SwitchEBPF && cfg.Switch != SwitchBridge {
		return nil, fmt.Errorf("%w: %q (want %s or %s)", ErrBadSwitch, cfg.Switch, SwitchEBPF, SwitchBridge)
	}
	if cfg.Hosts == 0 {
		cfg.Hosts = DefaultHosts
	}
	if err := ValidateHosts(cfg.Hosts); err != nil {
		return nil, err
	}
	if err := ValidateMigrationNet(cfg.MigrationNet); err != nil {
		return nil, err
	}
	if cfg.LinkRate != 0 && cfg.LinkRate < tclass.MinRate {
		return nil, fmt.Errorf("%w: link rate %d bit/s (at least 1mbit)", ErrBadImpairment, cfg.LinkRate)
	}
	if cfg.MigrationNet == MigrationNetMgmt {
		cfg.MigrationNet = "" // the default testbed's state stays as it was
	}
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	if left, _ := nsrun.List(cfg.Prefix + "-"); len(left) > 0 {
		return nil, fmt.Errorf("testbed %q %w (namespaces %s); run `cflow testbed down --prefix %s` first",
			cfg.Prefix, ErrExists, strings.Join(left, ", "), cfg.Prefix)
	}
	tb = &Testbed{Prefix: cfg.Prefix, Created: time.Now().UTC(), Switch: cfg.Switch, NoAuth: cfg.NoAuth, PrivateFS: cfg.PrivateFS,
		TLS: cfg.AgentBinary != "", Insecure: cfg.Insecure || cfg.NoAuth, HostCount: cfg.Hosts, HostCapacity: cfg.HostCapacity,
		MigrationNet: cfg.MigrationNet, LinkRate: cfg.LinkRate}
	// Root-only: it holds the token, the CA key and the agents' state.
	if err := os.MkdirAll(tb.Dir(), 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", tb.Dir(), err)
	}
	defer func() {
		if err != nil && !errors.Is(err, errSimulatedCrash) {
			if derr := Down(cfg.Prefix); derr != nil {
				err = errors.Join(err, fmt.Errorf("cleanup after failed up: %w", derr))
			}
		}
	}()

	steps := []func() error{
		func() error { return tb.makeNode(Switch) },
		tb.setupSwitch,
	}
	for _, n := range tb.Nodes() {
		steps = append(steps, func() error { return tb.makeNode(n.Name) }, func() error { return tb.linkNode(n) })
	}
	if tb.Switch == SwitchEBPF {
		steps = append(steps, tb.setupDataplane)
	}
	steps = append(steps, tb.saveState)
	if cfg.AgentBinary != "" {
		steps = append(steps, tb.ensurePKI)
		if tb.Switch == SwitchEBPF {
			// Before the agents, which steer through it.
			steps = append(steps, func() error { return tb.StartController(cfg.AgentBinary) })
		}
		steps = append(steps, func() error { return tb.StartAgents(cfg.AgentBinary) })
	}
	for i, step := range steps {
		if i == crashAfterStep {
			return nil, errSimulatedCrash
		}
		if err := step(); err != nil {
			return nil, fmt.Errorf("testbed %s up: %w", cfg.Prefix, err)
		}
	}
	return tb, nil
}

// Open returns the handle of a testbed that is up.
func Open(prefix string) (*Testbed, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if err := ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(RunDir, prefix, "testbed.json"))
	if errors.Is(err, os.ErrNotExist) {
		if left, _ := nsrun.List(prefix + "-"); len(left) > 0 {
			return nil, fmt.Errorf("testbed %q is incomplete (namespaces %s but no state); run `cflow testbed down --prefix %s`",
				prefix, strings.Join(left, ", "), prefix)
		}
		return nil, fmt.Errorf("testbed %q %w; run `cflow testbed up --prefix %s`", prefix, ErrNotFound, prefix)
	}
	if err != nil {
		return nil, fmt.Errorf("read testbed state: %w", err)
	}
	tb := &Testbed{}
	if err := json.Unmarshal(b, tb); err != nil {
		return nil, fmt.Errorf("parse testbed state %s: %w", prefix, err)
	}
	if tb.Switch == "" {
		tb.Switch = SwitchBridge // state written before the eBPF switch existed
	}
	if err := ValidateHosts(tb.hostCount()); err != nil {
		return nil, fmt.Errorf("testbed state %s: %w", prefix, err)
	}
	return tb, nil
}

// Down removes every namespace (and with them every link, address and
// nftables table) whose name starts with PREFIX-, kills the processes inside
// (agents, the switch controller), removes the eBPF switch's pins and the
// testbed's state directory. It is idempotent and works on the remains of a
// crashed Up.
func Down(prefix string) error {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if err := ValidatePrefix(prefix); err != nil {
		return err
	}
	names, err := nsrun.List(prefix + "-")
	if err != nil {
		return err
	}
	var errs []error
	// A process in a frozen cgroup (a migration cut in its freeze) does
	// not die of SIGKILL until thawed: thaw the testbed's containers first.
	thawContainers(prefix)
	// Before the namespaces, whose processes lead to the agents' views.
	if err := killPrivateViews(prefix); err != nil {
		errs = append(errs, err)
	}
	for _, n := range names {
		if err := nsrun.Delete(n); err != nil {
			errs = append(errs, err)
		}
	}
	// After the namespaces: their deletion took the ports, so removing
	// the pins frees the program and its maps for good.
	if err := removePins(prefix); err != nil {
		errs = append(errs, err)
	}
	if err := removeHostLeftovers(prefix); err != nil {
		errs = append(errs, err)
	}
	if err := mounts.RemoveAll(filepath.Join(RunDir, prefix)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Dir is the testbed's state directory (logs, sockets, state of its agents).
func (tb *Testbed) Dir() string { return filepath.Join(RunDir, tb.Prefix) }

// Netns returns the namespace name of a node ("switch", "hostA", ...) or of
// a container given as "HOST/NAME".
func (tb *Testbed) Netns(node string) (string, error) {
	if host, name, ok := strings.Cut(node, "/"); ok {
		if !tb.IsHost(host) {
			return "", tb.notHost(host)
		}
		if err := ValidateContainerName(name); err != nil {
			return "", err
		}
		return tb.containerNetns(host, name), nil
	}
	if node != Switch {
		if _, err := tb.Spec(node); err != nil {
			return "", err
		}
	}
	return tb.Prefix + "-" + node, nil
}

func (tb *Testbed) mustNetns(node string) string {
	ns, err := tb.Netns(node)
	if err != nil {
		panic(err)
	}
	return ns
}

// Do runs fn inside a node's network namespace.
func (tb *Testbed) Do(node string, fn func() error) error {
	ns, err := tb.Netns(node)
	if err != nil {
		return err
	}
	return nsrun.Do(ns, fn)
}

// Listen opens a listener inside a node; it stays in that namespace.
func (tb *Testbed) Listen(node, network, addr string) (l net.Listener, err error) {
	err = tb.Do(node, func() error {
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// Dial connects from inside a node.
func (tb *Testbed) Dial(node, network, addr string, timeout time.Duration) (c net.Conn, err error) {
	err = tb.Do(node, func() error {
		c, err = net.DialTimeout(network, addr, timeout)
		return err
	})
	return c, err
}

func (tb *Testbed) handle(node string) (*netlink.Handle, func(), error) {
	ns, err := tb.Netns(node)
	if err != nil {
		return nil, nil, err
	}
	h, err := netns.GetFromPath(nsrun.Path(ns))
	if err != nil {
		return nil, nil, fmt.Errorf("open netns %s: %w", ns, err)
	}
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		h.Close()
		return nil, nil, fmt.Errorf("netlink in %s: %w", ns, err)
	}
	return nh, func() { nh.Close(); h.Close() }, nil
}

// makeNode creates a node namespace with loopback up and IPv6 off (the
// testbed is IPv4-only; IPv6 autoconfiguration would only add noise, and
// neighbour solicitations from a pre-staged container could teach a
// learning switch the wrong port).
func (tb *Testbed) makeNode(node string) error {
	ns := tb.mustNetns(node)
	if err := nsrun.Create(ns); err != nil {
		return err
	}
	return cnet.Quiet(ns)
}

func (tb *Testbed) setupSwitch() error {
	h, done, err := tb.handle(Switch)
	if err != nil {
		return err
	}
	defer done()
	// No STP and no forwarding delay: ports forward as soon as they are up.
	// The management network is always a bridge; the data network is br0
	// only in bridge mode (with the eBPF switch the program on each port
	// forwards).
	mg := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: MgmtBridge}}
	if err := h.LinkAdd(mg); err != nil {
		return fmt.Errorf("add bridge %s: %w", MgmtBridge, err)
	}
	if err := cnet.AddAddr(h, mg, netip.PrefixFrom(SwitchMgmtIP, MgmtNet.Bits())); err != nil {
		return err
	}
	bridges := []netlink.Link{mg}
	if tb.Switch == SwitchBridge {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: DataBridge}}
		if err := h.LinkAdd(br); err != nil {
			return fmt.Errorf("add bridge %s: %w", DataBridge, err)
		}
		bridges = append(bridges, br)
	}
	for _, l := range bridges {
		if err := h.LinkSetUp(l); err != nil {
			return fmt.Errorf("set %s up: %w", l.Attrs().Name, err)
		}
	}
	return nil
}

// linkNode wires an edge node to its data and management ports and gives it
// its addresses.
func (tb *Testbed) linkNode(n NodeSpec) error {
	sw, swDone, err := tb.handle(Switch)
	if err != nil {
		return err
	}
	defer swDone()
	nh, nDone, err := tb.handle(n.Name)
	if err != nil {
		return err
	}
	defer nDone()
	nodeNs, err := netns.GetFromPath(nsrun.Path(tb.mustNetns(n.Name)))
	if err != nil {
		return err
	}
	defer nodeNs.Close()

	type wire struct {
		port, peer, master string
		mac                net.HardwareAddr
		addr               netip.Prefix
		learning           bool
	}
	dataMaster := DataBridge
	if tb.Switch == SwitchEBPF {
		dataMaster = "" // a bare port: the eBPF program forwards
	}
	wires := []wire{
		{n.DataPort(), UplinkIf, dataMaster, n.MAC, netip.PrefixFrom(n.DataIP, DataNet.Bits()), false},
		{n.MgmtPort(), MgmtIf, MgmtBridge, nil, netip.PrefixFrom(n.MgmtIP, MgmtNet.Bits()), true},
	}
	for _, w := range wires {
		v := &netlink.Veth{
			LinkAttrs:        netlink.LinkAttrs{Name: w.port},
			PeerName:         w.peer,
			PeerHardwareAddr: w.mac,
			PeerNamespace:    netlink.NsFd(nodeNs),
		}
		if err := sw.LinkAdd(v); err != nil {
			return fmt.Errorf("add veth %s<->%s/%s: %w", w.port, n.Name, w.peer, err)
		}
		port, err := sw.LinkByName(w.port)
		if err != nil {
			return err
		}
		if w.master != "" {
			master, err := sw.LinkByName(w.master)
			if err != nil {
				return err
			}
			if err := sw.LinkSetMaster(port, master); err != nil {
				return fmt.Errorf("attach %s to %s: %w", w.port, w.master, err)
			}
			if !w.learning {
				if err := sw.LinkSetLearning(port, false); err != nil {
					return fmt.Errorf("learning off on %s: %w", w.port, err)
				}
			}
		}
		if err := sw.LinkSetUp(port); err != nil {
			return fmt.Errorf("set %s up: %w", w.port, err)
		}
		peer, err := nh.LinkByName(w.peer)
		if err != nil {
			return fmt.Errorf("find %s in %s: %w", w.peer, n.Name, err)
		}
		if err := cnet.AddAddr(nh, peer, w.addr); err != nil {
			return err
		}
		if err := nh.LinkSetUp(peer); err != nil {
			return fmt.Errorf("set %s/%s up: %w", n.Name, w.peer, err)
		}
	}
	if tb.Switch == SwitchBridge {
		return setFDB(sw, n.DataPort(), n.MAC)
	}
	return nil
}

// setFDB points a MAC at one data port of the bridge with a static entry
// (`bridge fdb replace MAC dev PORT master static`).
func setFDB(sw *netlink.Handle, port string, mac net.HardwareAddr) error {
	l, err := sw.LinkByName(port)
	if err != nil {
		return fmt.Errorf("find switch port %s: %w", port, err)
	}
	err = sw.NeighSet(&netlink.Neigh{
		LinkIndex:    l.Attrs().Index,
		Family:       syscall.AF_BRIDGE,
		State:        netlink.NUD_NOARP,
		Flags:        netlink.NTF_MASTER,
		HardwareAddr: mac,
	})
	if err != nil {
		return fmt.Errorf("fdb %s -> %s: %w", mac, port, err)
	}
	return nil
}

func (tb *Testbed) saveState() error {
	b, err := json.MarshalIndent(tb, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(tb.Dir(), "testbed.json"), b, 0o644)
}

// thawContainers thaws every freezer cgroup of the testbed's containers.
func thawContainers(prefix string) {
	states, _ := filepath.Glob("/sys/fs/cgroup/freezer/containerflow/" + prefix + "-*/*/freezer.state")
	for _, st := range states {
		_ = os.WriteFile(st, []byte("THAWED"), 0)
	}
}
