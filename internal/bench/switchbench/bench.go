package switchbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"time"

	"github.com/containerflow/containerflow/internal/controller"
	"github.com/containerflow/containerflow/internal/testbed"
)

// Options configure Run. Zero values take the defaults.
type Options struct {
	// Prefix names the two testbeds (PREFIX+"e" with the eBPF switch,
	// PREFIX+"b" with the bridge); at most 7 characters.
	Prefix string
	// Moves is the number of timed address moves (default 2000).
	Moves int
	// Rounds is the number of forwarding rounds per switch kind (default 5).
	Rounds int
	// RoundDuration is the length of a forwarding round (default 2 s).
	RoundDuration time.Duration
	// Payload is the UDP payload size of the forwarding test (default 18
	// bytes: 60-byte Ethernet frames, the minimum).
	Payload int
	// Flows is the number of flows the load-balancer test sends (default
	// 20000).
	Flows int
	// Log receives progress lines (nil: discarded).
	Log io.Writer
}

func (o *Options) defaults() {
	if o.Prefix == "" {
		o.Prefix = "cfsb"
	}
	if o.Moves <= 0 {
		o.Moves = 2000
	}
	if o.Rounds <= 0 {
		o.Rounds = 5
	}
	if o.RoundDuration <= 0 {
		o.RoundDuration = 2 * time.Second
	}
	if o.Payload <= 0 {
		o.Payload = 18
	}
	if o.Flows <= 0 {
		o.Flows = 20000
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
}

// Result is what Run measured; its JSON form is what --json writes.
type Result struct {
	Started         time.Time    `json:"started"`
	Host            HostInfo     `json:"host"`
	UpdateLatencyUS Latency      `json:"update_latency_us"`
	UpdateLatencyV1 Latency      `json:"update_latency_v1_us"`
	ForwardPPS      ForwardPPS   `json:"forward_pps"`
	LBImbalance     float64      `json:"lb_imbalance"`
	LB              LBResult     `json:"lb"`
	Floors          []FloorCheck `json:"floors"`
}

// HostInfo describes where the figures were taken.
type HostInfo struct {
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go_version"`
	Kernel    string `json:"kernel"`
}

// FloorCheck is one of the floors, evaluated.
type FloorCheck struct {
	Name   string `json:"name"`
	Passed bool   `json:"passed"`
	Detail string `json:"detail"`
}

// Run builds the testbeds, measures, and removes them (also on failure).
func Run(ctx context.Context, o Options) (res *Result, err error) {
	o.defaults()
	if len(o.Prefix) > 7 {
		return nil, fmt.Errorf("bench prefix %q: at most 7 characters", o.Prefix)
	}
	res = &Result{Started: time.Now().UTC(), Host: hostInfo()}
	logf := func(format string, a ...any) { fmt.Fprintf(o.Log, format+"\n", a...) }

	ebpfPfx, brPfx := o.Prefix+"e", o.Prefix+"b"
	for _, p := range []string{ebpfPfx, brPfx} {
		if err := testbed.Down(p); err != nil { // leftovers of an interrupted run
			return nil, err
		}
	}
	defer func() {
		for _, p := range []string{ebpfPfx, brPfx} {
			if derr := testbed.Down(p); derr != nil {
				err = errors.Join(err, fmt.Errorf("remove bench testbed %s: %w", p, derr))
			}
		}
	}()
	logf("testbeds: %s (eBPF switch), %s (Linux bridge)", ebpfPfx, brPfx)
	tbE, err := testbed.Up(testbed.Config{Prefix: ebpfPfx, Switch: testbed.SwitchEBPF})
	if err != nil {
		return nil, err
	}
	tbB, err := testbed.Up(testbed.Config{Prefix: brPfx, Switch: testbed.SwitchBridge})
	if err != nil {
		return nil, err
	}

	ctl, stop, err := startController(tbE)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, stop()) }()

	logf("update latency: %d moves through the API from hostA", o.Moves)
	if res.UpdateLatencyUS, res.UpdateLatencyV1, err = measureUpdates(ctx, tbE, ctl, o.Moves); err != nil {
		return nil, err
	}
	logf("load balancer: %d flows over 4 members", o.Flows)
	if res.LB, err = measureLB(ctx, tbE, ctl.ctl, ctl.client, o.Flows); err != nil {
		return nil, err
	}
	res.LBImbalance = res.LB.Imbalance
	logf("forwarding: %d rounds of %v per switch, alternating", o.Rounds, o.RoundDuration)
	if res.ForwardPPS, err = measureForwarding(ctx, map[string]*testbed.Testbed{testbed.SwitchEBPF: tbE, testbed.SwitchBridge: tbB}, o, logf); err != nil {
		return nil, err
	}
	res.Floors = floors(res)
	return res, nil
}

// benchController is the switch controller the bench drives, serving on
// the testbed's management address like `cflow switch serve`, with a client
// that connects from hostA as an agent would.
type benchController struct {
	ctl    *controller.Controller
	client *controller.Client
	hc     *http.Client
	token  string
}

const benchToken = "switchbench"

// startController takes over the testbed's pinned switch with an
// in-process controller (the same code `cflow switch serve` runs) listening
// on 198.19.0.1:5000 in the switch namespace.
func startController(tb *testbed.Testbed) (*benchController, func() error, error) {
	ctl, err := controller.New(controller.Options{Config: tb.ControllerConfig(), PinPath: tb.PinPath(),
		Netns: "/run/netns/" + tb.Prefix + "-" + testbed.Switch, StatePath: tb.SwitchDir() + "/bench-state.db",
		Token: benchToken, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, nil, err
	}
	var l net.Listener
	addr := fmt.Sprintf("%s:%d", testbed.SwitchMgmtIP, testbed.ControllerPort)
	if err := tb.Do(testbed.Switch, func() (err error) {
		l, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		ctl.Close()
		return nil, nil, fmt.Errorf("listen %s in the switch namespace: %w", addr, err)
	}
	srv := &http.Server{Handler: ctl.Handler()}
	go srv.Serve(l) //nolint:errcheck // ends with Close
	d := &net.Dialer{Timeout: 3 * time.Second}
	tr := &http.Transport{MaxIdleConnsPerHost: 2, DialContext: func(ctx context.Context, network, a string) (c net.Conn, err error) {
		err = tb.Do(testbed.HostA, func() error {
			c, err = d.DialContext(ctx, network, a)
			return err
		})
		return c, err
	}}
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	bc := &benchController{ctl: ctl, hc: hc, token: benchToken,
		client: controller.NewClient("http://"+addr, controller.ClientOptions{Token: benchToken, HTTPClient: hc})}
	stop := func() error {
		_ = srv.Close()
		return ctl.Close()
	}
	return bc, stop, nil
}

func hostInfo() HostInfo {
	h := HostInfo{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := readFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = b
	}
	return h
}
