package testbed

import (
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/containerflow/containerflow/internal/nsrun"
	"github.com/containerflow/containerflow/internal/tclass"
	"github.com/vishvananda/netlink"
)

// LinkStatus describes one interface inside a node.
type LinkStatus struct {
	Name   string   `json:"name"`
	Up     bool     `json:"up"`
	MAC    string   `json:"mac,omitempty"`
	Addrs  []string `json:"addrs,omitempty"`
	Master string   `json:"master,omitempty"`
}

// NodeStatus describes one namespace of the testbed.
type NodeStatus struct {
	Node      string       `json:"node"`
	Netns     string       `json:"netns"`
	Present   bool         `json:"present"`
	Processes int          `json:"processes"`
	Links     []LinkStatus `json:"links,omitempty"`
}

// Status is a snapshot of a testbed, read from the kernel (not from the
// state file), so it shows what is really there.
type Status struct {
	Prefix     string       `json:"prefix"`
	Switch     SwitchStatus `json:"switch"`
	Nodes      []NodeStatus `json:"nodes"`
	Containers []NodeStatus `json:"containers"`
	// Impairments are the impaired links (Impair).
	Impairments []LinkImpairment `json:"impairments,omitempty"`
	// Classes are the hosts' uplinks that an agent schedules with the
	// migration traffic class (agent serve --link-rate), with their
	// counters.
	Classes []HostClasses `json:"traffic_classes,omitempty"`
}

// HostClasses is one host's uplink classes, read through netlink.
type HostClasses struct {
	Host string `json:"host"`
	*tclass.State
}

// Healthy reports whether every node namespace exists, every link in it is
// up, and (eBPF switch) every data port is attached.
func (s Status) Healthy() bool {
	if len(s.Switch.Problems) > 0 {
		return false
	}
	for _, im := range s.Impairments {
		if !im.Running {
			return false // its filters drop everything: the link is dead
		}
	}
	for _, n := range s.Nodes {
		if !n.Present {
			return false
		}
		for _, l := range n.Links {
			if !l.Up {
				return false
			}
		}
	}
	return true
}

// Status reads the testbed's namespaces, links and processes.
func (tb *Testbed) Status() (Status, error) {
	st := Status{Prefix: tb.Prefix, Switch: tb.switchStatus()}
	for _, h := range tb.Hosts() {
		ns, _ := tb.Netns(h)
		if cs, err := tclass.Read(ns, UplinkIf); err == nil && cs.Installed {
			st.Classes = append(st.Classes, HostClasses{Host: h, State: cs})
		}
	}
	nodes := []string{Switch}
	for _, n := range tb.Nodes() {
		nodes = append(nodes, n.Name)
	}
	for _, n := range nodes {
		ns, err := tb.nodeStatus(n)
		if err != nil {
			return st, err
		}
		st.Nodes = append(st.Nodes, ns)
	}
	for _, h := range tb.Hosts() {
		names, err := tb.ContainerNets(h)
		if err != nil {
			return st, err
		}
		for _, c := range names {
			ns, err := tb.nodeStatus(h + "/" + c)
			if err != nil {
				return st, err
			}
			st.Containers = append(st.Containers, ns)
		}
	}
	ims, err := tb.Impairments()
	st.Impairments = ims
	return st, err
}

func (tb *Testbed) nodeStatus(node string) (NodeStatus, error) {
	nsName, err := tb.Netns(node)
	if err != nil {
		return NodeStatus{}, err
	}
	ns := NodeStatus{Node: node, Netns: nsName, Present: nsrun.Exists(nsName)}
	if !ns.Present {
		return ns, nil
	}
	pids, _ := nsrun.Pids(nsName)
	ns.Processes = len(pids)
	h, done, err := tb.handle(node)
	if err != nil {
		return ns, err
	}
	defer done()
	links, err := h.LinkList()
	if err != nil {
		return ns, fmt.Errorf("list links of %s: %w", node, err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	for _, l := range links {
		a := l.Attrs()
		if a.Name == "lo" {
			continue
		}
		ls := LinkStatus{Name: a.Name, Up: a.Flags&net.FlagUp != 0, MAC: a.HardwareAddr.String(), Master: names[a.MasterIndex]}
		addrs, _ := h.AddrList(l, netlink.FAMILY_V4)
		for _, ad := range addrs {
			ls.Addrs = append(ls.Addrs, ad.IPNet.String())
		}
		ns.Links = append(ns.Links, ls)
	}
	sort.Slice(ns.Links, func(a, b int) bool { return ns.Links[a].Name < ns.Links[b].Name })
	return ns, nil
}

// Print writes the status as a table.
func (s Status) Print(w io.Writer) {
	s.Switch.print(w)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "NODE\tNETNS\tPROCS\tLINK\tSTATE\tMAC\tADDRESSES\n")
	rows := append(append([]NodeStatus{}, s.Nodes...), s.Containers...)
	for _, n := range rows {
		if !n.Present {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\tMISSING\t\t\n", n.Node, n.Netns)
			continue
		}
		if len(n.Links) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%d\t-\t\t\t\n", n.Node, n.Netns, n.Processes)
		}
		for i, l := range n.Links {
			node, netns, procs := n.Node, n.Netns, fmt.Sprint(n.Processes)
			if i > 0 {
				node, netns, procs = "", "", ""
			}
			state := "down"
			if l.Up {
				state = "up"
			}
			name := l.Name
			if l.Master != "" {
				name += "@" + l.Master
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", node, netns, procs, name, state, l.MAC, strings.Join(l.Addrs, ","))
		}
	}
	tw.Flush()
	s.printClasses(w)
	if len(s.Impairments) == 0 {
		fmt.Fprintln(w, "impairments: none")
		return
	}
	fmt.Fprintln(w, "impairments:")
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "LINK\tMECHANISM\tSTATE\tIMPAIRMENT (each direction)\tFRAMES up/down (received, lost, queue-dropped)\n")
	for _, im := range s.Impairments {
		mech, state := im.Mechanism, "active"
		if im.PID != 0 {
			mech += fmt.Sprintf(" (pid %d)", im.PID)
		}
		if !im.Running {
			state = "DEAD"
		}
		frames := ""
		if up, ok := im.Stats["up"]; ok {
			dn := im.Stats["down"]
			frames = fmt.Sprintf("%d,%d,%d / %d,%d,%d", up.Received, up.Lost, up.QueueDrop, dn.Received, dn.Lost, dn.QueueDrop)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", im.Link, mech, state, im.Impairment, frames)
	}
	tw.Flush()
}

// printClasses lists the scheduled uplinks; nothing when none is.
func (s Status) printClasses(w io.Writer) {
	if len(s.Classes) == 0 {
		return
	}
	fmt.Fprintln(w, "traffic classes (agent --link-rate):")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "HOST	LINK	RATE	LIVE bytes/packets	MIGRATION bytes/packets	FILTERS ipv4/ipv6\n")
	for _, c := range s.Classes {
		rate, live, mig := "?", "-", "-"
		if c.Parent != nil {
			rate = FormatRate(c.Parent.Rate)
		}
		if c.Live != nil {
			live = fmt.Sprintf("%d/%d", c.Live.Bytes, c.Live.Packets)
		}
		if c.Migration != nil {
			mig = fmt.Sprintf("%d/%d", c.Migration.Bytes, c.Migration.Packets)
		}
		fmt.Fprintf(tw, "%s	%s	%s	%s	%s	%d/%d\n", c.Host, UplinkIf, rate, live, mig, c.MigrationFiltersIPv4, c.MigrationFiltersIPv6)
	}
	tw.Flush()
}
