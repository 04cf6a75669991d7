package testbed

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// SwitchStatus describes the testbed's data-plane switch.
type SwitchStatus struct {
	Kind string `json:"kind"` // SwitchEBPF or SwitchBridge
	// eBPF switch only:
	PinPath    string       `json:"pin_path,omitempty"`
	Controller string       `json:"controller,omitempty"` // URL, when a controller runs
	Ports      []SwitchPort `json:"ports,omitempty"`
	Addresses  int          `json:"addresses,omitempty"`
	Problems   []string     `json:"problems,omitempty"`
}

// SwitchPort is an attached port of the eBPF switch with its counters.
type SwitchPort struct {
	Number    uint32 `json:"number"`
	Name      string `json:"name"`
	Interface string `json:"interface"`
	Mode      string `json:"mode"`
	RxPackets uint64 `json:"rx_packets"`
	TxPackets uint64 `json:"tx_packets"`
	RxDropped uint64 `json:"rx_dropped"`
}

// switchStatus reads the switch: through the controller when it runs
// (its view includes its own health), else from the pinned tables.
func (tb *Testbed) switchStatus() SwitchStatus {
	ss := SwitchStatus{Kind: tb.Switch}
	if tb.Switch != SwitchEBPF {
		return ss
	}
	ss.PinPath = tb.PinPath()
	names := map[uint32]string{}
	for _, n := range tb.Nodes() {
		names[n.Port] = n.Name
	}
	if tb.controllerRunning() {
		ss.Controller = tb.ControllerAPIURL()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c := tb.ControllerClient()
		if h, err := c.Health(ctx); err != nil {
			ss.Problems = append(ss.Problems, "controller health: "+err.Error())
		} else {
			ss.Addresses = h.Addresses
			ss.Problems = append(ss.Problems, h.Problems...)
		}
		ports, err := c.Ports(ctx)
		if err != nil {
			ss.Problems = append(ss.Problems, "controller ports: "+err.Error())
		}
		for _, p := range ports {
			ss.Ports = append(ss.Ports, SwitchPort{Number: p.Number, Name: names[p.Number], Interface: p.Interface,
				Mode: p.Mode, RxPackets: p.RxPackets, TxPackets: p.TxPackets, RxDropped: p.RxDropped})
		}
	} else {
		dp, err := tb.OpenDataplane()
		if err != nil {
			ss.Problems = append(ss.Problems, err.Error())
			return ss
		}
		defer dp.Close()
		ports, err := dp.Ports()
		if err != nil {
			ss.Problems = append(ss.Problems, "ports: "+err.Error())
		}
		for _, p := range ports {
			ss.Ports = append(ss.Ports, SwitchPort{Number: p.Number, Name: names[p.Number], Interface: p.Name,
				Mode: p.Mode, RxPackets: p.Counters.RxPackets, TxPackets: p.Counters.TxPackets, RxDropped: p.Counters.RxDropped})
		}
		if as, err := dp.Addresses(); err == nil {
			ss.Addresses = len(as)
		}
	}
	attached := map[uint32]bool{}
	for _, p := range ss.Ports {
		attached[p.Number] = true
	}
	for _, n := range tb.Nodes() {
		if !attached[n.Port] {
			ss.Problems = append(ss.Problems, fmt.Sprintf("port %d (%s) not attached", n.Port, n.DataPort()))
		}
	}
	return ss
}

func (ss SwitchStatus) print(w io.Writer) {
	if ss.Kind != SwitchEBPF {
		fmt.Fprintf(w, "switch: %s (%s, static FDB entries)\n", ss.Kind, DataBridge)
		return
	}
	ctl := "no controller (tables written directly)"
	if ss.Controller != "" {
		ctl = "controller " + ss.Controller
	}
	fmt.Fprintf(w, "switch: ebpf, pinned at %s, %s, %d address entries\n", ss.PinPath, ctl, ss.Addresses)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  PORT\tNAME\tINTERFACE\tMODE\tRX\tTX\tDROPPED\n")
	for _, p := range ss.Ports {
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%d\t%d\t%d\n", p.Number, p.Name, p.Interface, p.Mode, p.RxPackets, p.TxPackets, p.RxDropped)
	}
	tw.Flush()
	if len(ss.Problems) > 0 {
		fmt.Fprintf(w, "  problems: %s\n", strings.Join(ss.Problems, "; "))
	}
}
