package evacbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerflow/containerflow/internal/agent"
	"github.com/containerflow/containerflow/internal/metrics"
	"github.com/containerflow/containerflow/internal/nsrun"
	"github.com/containerflow/containerflow/internal/tclass"
	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/workload/stream"
)

// Class settings compared side by side.
const (
	ClassOn  = "on"  // marked packets go to the migration class
	ClassOff = "off" // the same qdisc at the same rate without its filters: one FIFO
)

// ClassResult is a --compare-class run.
type ClassResult struct {
	LinkRate    uint64 `json:"link_rate_bps"`
	MemoryMiB   int    `json:"container_memory_mib"`
	Concurrency int    `json:"concurrency"`
	Rounds      int    `json:"rounds"`
	// Idle: the observers with nothing being migrated, for reference.
	Idle []*Observed   `json:"idle"`
	Rows []*ClassRow   `json:"rows"`
	Obs  []ObserverEnd `json:"observers"`
}

// ClassRow is the evacuations run with one class setting.
type ClassRow struct {
	Class string `json:"class"`
	Row
	Observed []*Observed `json:"observed"`
	// Through hostA's uplink classes during the evacuations, and how busy
	// the link was: bytes sent over what the rate allows in that time.
	LiveBytes      uint64  `json:"live_bytes"`
	MigrationBytes uint64  `json:"migration_bytes"`
	LinkBusy       float64 `json:"link_busy"`
}

// Observed is one observer's figures over a set of windows.
type Observed struct {
	Observer string       `json:"observer"`
	OneWay   metrics.Dist `json:"one_way_ms"` // the server's records, server to client
	RTT      metrics.Dist `json:"rtt_ms"`     // the client's records, echoed
	MaxGap   float64      `json:"max_gap_ms"` // longest silence of either kind
	oneWay   []float64
	rtt      []float64
}

// ObserverEnd is an observer connection's end state: it must have lost
// nothing.
type ObserverEnd struct {
	Observer    string `json:"observer"`
	Dropped     bool   `json:"dropped"`
	RecordsLost uint64 `json:"records_lost"`
	Duplicated  uint64 `json:"records_duplicated"`
	Unanswered  uint64 `json:"records_unanswered"`
}

// observer is a stream server that no evacuation moves, and its client.
type observer struct {
	name string
	conn *stream.Conn
	stop func()
}

// Observers. The source's is a process of hostA itself (on its data
// address): every container on hostA is evacuated, and it is the source's
// uplink that the images leave by, so that is where live traffic meets
// them. The destination's is a container on hostB, whose uplink carries
// the migrated containers' traffic but not the images (they arrive on it).
const (
	ObserverSource = "hostA (source: host service)"
	ObserverDest   = "hostB (destination: container)"
	observerPort   = 9100
)

var observerIP = netip.MustParseAddr("198.18.0.90")

// runClass evacuates hostA on links of o.LinkRate with the class on and
// off in turn, observing live streams that stay where they are.
func runClass(ctx context.Context, o Options) (*Result, error) {
	if o.LinkRate < tclass.MinRate {
		return nil, errors.New("--compare-class needs --link-rate (at least 1mbit)")
	}
	tb, err := testbed.Up(testbed.Config{Prefix: o.Prefix, AgentBinary: o.Binary, Hosts: o.Hosts,
		HostCapacity: testbed.Capacity{CPUs: 2, Memory: "2GiB"},
		MigrationNet: testbed.MigrationNetData, LinkRate: o.LinkRate})
	if err != nil {
		return nil, err
	}
	defer testbed.Down(o.Prefix) //nolint:errcheck // best effort on the way out
	b, err := newBed(ctx, tb)
	if err != nil {
		return nil, err
	}
	obs, err := b.startObservers(ctx, o)
	defer func() {
		for _, ob := range obs {
			ob.stop()
		}
	}()
	if err != nil {
		return nil, err
	}
	cr := &ClassResult{LinkRate: o.LinkRate, MemoryMiB: o.MemoryMiB, Concurrency: o.Concurrency[0], Rounds: o.Rounds}
	res := &Result{Hosts: o.Hosts, Containers: o.Containers, Class: cr}

	fmt.Fprintf(o.Progress, "observing the idle link for 3 s\n")
	idleFrom := time.Now()
	time.Sleep(3 * time.Second)
	cr.Idle = observe(obs, [][2]time.Time{{idleFrom, time.Now()}})

	rows := map[string]*ClassRow{}
	windows := map[string][][2]time.Time{}
	for _, c := range []string{ClassOn, ClassOff} {
		rows[c] = &ClassRow{Class: c, Row: Row{Concurrency: cr.Concurrency, Destinations: map[string]int{}}}
		cr.Rows = append(cr.Rows, rows[c])
	}
	nsA, _ := tb.Netns(testbed.HostA)
	busyBytes, busyTime := map[string]uint64{}, map[string]time.Duration{}
	for r := range o.Rounds {
		// Alternated, so neither setting always runs first.
		order := []string{ClassOn, ClassOff}
		if r%2 == 1 {
			order = []string{ClassOff, ClassOn}
		}
		for _, c := range order {
			if err := setClass(tb, c); err != nil {
				return res, err
			}
			fmt.Fprintf(o.Progress, "round %d, class %s: evacuating %d containers from hostA, %d at once\n", r+1, c, o.Containers, cr.Concurrency)
			before, err := tclass.Read(nsA, testbed.UplinkIf)
			if err != nil {
				return res, err
			}
			ev, err := b.evacuate(ctx, o, cr.Concurrency)
			if err != nil {
				return res, err
			}
			after, err := tclass.Read(nsA, testbed.UplinkIf)
			if err != nil {
				return res, err
			}
			row := rows[c]
			row.add(ev)
			row.LiveBytes += after.Live.Bytes - before.Live.Bytes
			row.MigrationBytes += after.Migration.Bytes - before.Migration.Bytes
			busyBytes[c] += after.Parent.Bytes - before.Parent.Bytes
			busyTime[c] += ev.op.Ended.Sub(ev.op.Started)
			windows[c] = append(windows[c], [2]time.Time{ev.op.Started, ev.op.Ended})
		}
	}
	for _, c := range []string{ClassOn, ClassOff} {
		row := rows[c]
		row.summarize()
		row.Observed = observe(obs, windows[c])
		if busyTime[c] > 0 {
			row.LinkBusy = float64(busyBytes[c]*8) / (float64(o.LinkRate) * busyTime[c].Seconds())
		}
	}
	for _, ob := range obs {
		st := ob.conn.Stop(ctx, 5*time.Second)
		cr.Obs = append(cr.Obs, ObserverEnd{Observer: ob.name, Dropped: st.Dropped, RecordsLost: st.Echo.Lost + st.Server.Lost,
			Duplicated: st.Echo.Duplicated + st.Server.Duplicated, Unanswered: st.Unanswered()})
	}
	return res, errors.Join(ctx.Err(), res.lossError())
}

// setClass switches the class on or off on every host's uplink: with it
// off, the same qdisc at the same rate has no filter, so every packet,
// marked or not, waits in the live class's one FIFO — the link as it is
// without a traffic class, at the same rate.
func setClass(tb *testbed.Testbed, class string) error {
	dscp := tclass.DefaultDSCP
	if class == ClassOff {
		dscp = -1
	}
	for _, h := range tb.Hosts() {
		ns, _ := tb.Netns(h)
		if err := tclass.SetFilters(ns, testbed.UplinkIf, dscp); err != nil {
			return fmt.Errorf("class %s on %s: %w", class, h, err)
		}
	}
	return nil
}

// startObservers starts the two observers and connects to them.
func (b *bed) startObservers(ctx context.Context, o Options) ([]*observer, error) {
	var obs []*observer
	specA, _ := b.tb.Spec(testbed.HostA)
	ns, _ := b.tb.Netns(testbed.HostA)
	cmd := exec.Command(o.Binary, "workload", "stream-server", "--listen", fmt.Sprintf("%s:%d", specA.DataIP, observerPort),
		"--interval", o.Interval.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := nsrun.Start(ns, cmd); err != nil {
		return nil, fmt.Errorf("observer on hostA: %w", err)
	}
	stopA := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	k, err := b.connect(specA.DataIP, observerPort, true, 0)
	if err != nil {
		stopA()
		return nil, fmt.Errorf("observer on hostA: %w", err)
	}
	obs = append(obs, &observer{name: ObserverSource, conn: k, stop: func() { k.Stop(context.Background(), 0); stopA() }})

	spec := agent.ContainerSpec{Name: "observer", IP: observerIP, Args: []string{"/opt/cflow/bin/" + filepath.Base(o.Binary),
		"workload", "stream-server", "--listen", fmt.Sprintf(":%d", observerPort), "--interval", o.Interval.String()}}
	// Not the evacuated containers' small CPU request: as a cgroup
	// limit it throttles the server for most of each 100 ms period, and
	// that, not the link, would be what the observer sees.
	spec.Resources.CPUs, spec.Resources.MemoryBytes = 0.5, 64<<20
	if _, err := b.ag[testbed.HostB].Run(ctx, spec); err != nil {
		return obs, fmt.Errorf("observer on hostB: %w", err)
	}
	stopB := func() { _ = b.ag[testbed.HostB].Remove(context.Background(), spec.Name) }
	k, err = b.connect(observerIP, observerPort, true, 0)
	if err != nil {
		stopB()
		return obs, fmt.Errorf("observer on hostB: %w", err)
	}
	obs = append(obs, &observer{name: ObserverDest, conn: k, stop: func() { k.Stop(context.Background(), 0); stopB() }})
	return obs, nil
}

// observe summarizes each observer's records that arrived in the windows.
func observe(obs []*observer, windows [][2]time.Time) []*Observed {
	var out []*Observed
	for _, ob := range obs {
		o := &Observed{Observer: ob.name}
		st := ob.conn.Stats()
		for _, w := range windows {
			for _, d := range ob.conn.Latencies(stream.KindServer, w[0], w[1]) {
				o.oneWay = append(o.oneWay, ms(d))
			}
			for _, d := range ob.conn.Latencies(stream.KindEcho, w[0], w[1]) {
				o.rtt = append(o.rtt, ms(d))
			}
			o.MaxGap = max(o.MaxGap, ms(st.MaxGapIn(0, w[0], w[1])))
		}
		o.OneWay, o.RTT = metrics.Summarize(o.oneWay), metrics.Summarize(o.rtt)
		out = append(out, o)
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// lossError says what was lost: every connection, the observers' and the
// migrated containers', must come through whole.
func (r *Result) lossError() error {
	if r.Class == nil {
		return nil
	}
	var errs []error
	for _, row := range r.Class.Rows {
		if row.Dropped > 0 || row.RecordsLost+row.Duplicated+row.Unanswered > 0 || row.FailedSteps > 0 {
			errs = append(errs, fmt.Errorf("class %s: %d connections dropped, %d records lost, %d duplicated, %d unanswered, %d steps failed",
				row.Class, row.Dropped, row.RecordsLost, row.Duplicated, row.Unanswered, row.FailedSteps))
		}
	}
	for _, ob := range r.Class.Obs {
		if ob.Dropped || ob.RecordsLost+ob.Duplicated+ob.Unanswered > 0 {
			errs = append(errs, fmt.Errorf("observer %s: dropped %v, %d records lost, %d duplicated, %d unanswered",
				ob.Observer, ob.Dropped, ob.RecordsLost, ob.Duplicated, ob.Unanswered))
		}
	}
	return errors.Join(errs...)
}

func (r *Result) printClass(w io.Writer) {
	c := r.Class
	fmt.Fprintf(w, "migration traffic class: %d containers (ballast %d MiB) evacuated from hostA over %d hosts, %d at once, %d round(s) per setting;\n",
		r.Containers, c.MemoryMiB, r.Hosts, c.Concurrency, c.Rounds)
	fmt.Fprintf(w, "images over the data network, every uplink scheduled at %s; class off = same qdisc without filters (one FIFO)\n", testbed.FormatRate(c.LinkRate))
	fmt.Fprintf(w, "%-6s %-14s %-26s %-26s %-6s %-7s %-5s %-20s %-9s %s\n", "class", "evacuation ms", "downtime ms p50/p99/max",
		"client gap ms p50/p99/max", "moved", "failed", "drops", "lost/dup/unanswered", "link busy", "hostA MB live/migration")
	for _, row := range c.Rows {
		fmt.Fprintf(w, "%-6s %-14.0f %-26s %-26s %-6d %-7d %-5d %-20s %-9s %.1f/%.1f\n", row.Class, mean(row.EvacuationMs),
			dist3(row.Downtime), dist3(row.ClientGap), row.Moved, row.FailedSteps, row.Dropped,
			fmt.Sprintf("%d/%d/%d", row.RecordsLost, row.Duplicated, row.Unanswered), fmt.Sprintf("%.0f%%", 100*row.LinkBusy),
			float64(row.LiveBytes)/1e6, float64(row.MigrationBytes)/1e6)
	}
	fmt.Fprintf(w, "\nobserver (not migrated)            during     one-way ms p50/p95/p99/max   rtt ms p50/p95/p99/max       longest gap ms (0: none >= 20)\n")
	line := func(o *Observed, during string) {
		fmt.Fprintf(w, "%-34s %-10s %-28s %-28s %.1f\n", o.Observer, during, dist4(o.OneWay), dist4(o.RTT), o.MaxGap)
	}
	for i := range c.Idle {
		line(c.Idle[i], "idle")
		for _, row := range c.Rows {
			if i < len(row.Observed) {
				line(row.Observed[i], "class "+row.Class)
			}
		}
	}
	for _, ob := range c.Obs {
		fmt.Fprintf(w, "%s: dropped %v, records lost %d, duplicated %d, unanswered %d\n", ob.Observer, ob.Dropped, ob.RecordsLost, ob.Duplicated, ob.Unanswered)
	}
}

func dist3(d metrics.Dist) string { return fmt.Sprintf("%.1f/%.1f/%.1f", d.P50, d.P99, d.Max) }

func dist4(d metrics.Dist) string {
	return fmt.Sprintf("%.1f/%.1f/%.1f/%.1f", d.P50, d.P95, d.P99, d.Max)
}
