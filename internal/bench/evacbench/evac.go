// Package evacbench is `cflow bench evacuate`: it empties a host of many
// containers, each a sequence-checked stream server with a live
// connection, through the controller's fleet, at several concurrencies
// side by side on one testbed, and reports the evacuation time, each
// container's downtime, drops and records lost.
package evacbench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/containerflow/containerflow/internal/agent"
	"github.com/containerflow/containerflow/internal/controller"
	"github.com/containerflow/containerflow/internal/fleet"
	"github.com/containerflow/containerflow/internal/metrics"
	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/workload/stream"
)

// Options configure Run.
type Options struct {
	Binary      string // the cflow binary (agents, controller, workload)
	Prefix      string // testbed prefix (default: random "ev....")
	Hosts       int    // testbed hosts (default 4)
	Containers  int    // evacuated each time (default 24)
	Concurrency []int  // side by side (default 1, 2, 4)
	Rounds      int    // evacuations per concurrency (default 1)
	Interval    time.Duration
	CPUs        float64 // each container's request
	MemoryBytes int64
	MemoryMiB   int // each container's ballast (stream-server --memory-mib): more to move
	// LinkRate (bits/s) and CompareClass: evacuate over the data network
	// on links of that rate, with the migration traffic class on and off
	// in turn, and observe a live stream that is not migrated (tclass.go).
	LinkRate     uint64
	CompareClass bool
	Progress     io.Writer
}

// Row is one concurrency's figures.
type Row struct {
	Concurrency int `json:"concurrency"`
	Evacuations int `json:"evacuations"`
	// Evacuation time, from the operation's start to its end, per round.
	EvacuationMs []float64 `json:"evacuation_ms"`
	// Per container: the migration record's time to ready, and the
	// longest silence its client saw during the evacuation.
	Downtime     metrics.Dist   `json:"downtime_ms"`
	ClientGap    metrics.Dist   `json:"client_gap_ms"`
	Moved        int            `json:"moved"`
	FailedSteps  int            `json:"failed_steps"`
	Dropped      int            `json:"connections_dropped"`
	RecordsLost  uint64         `json:"records_lost"`
	Duplicated   uint64         `json:"records_duplicated"`
	Unanswered   uint64         `json:"records_unanswered"`
	Destinations map[string]int `json:"destinations"`
	// SpeedupOverOne: evacuation time at concurrency 1 over this one (mean).
	SpeedupOverOne float64 `json:"speedup_over_1,omitempty"`

	downs, gaps []float64 // what Downtime and ClientGap summarize
}

// Result is the whole run.
type Result struct {
	Hosts      int    `json:"hosts"`
	Containers int    `json:"containers"`
	Rows       []*Row `json:"rows,omitempty"`
	// Class is a --compare-class run's (instead of Rows).
	Class *ClassResult `json:"class,omitempty"`
}

// ContainerIP is the first container's address; the others follow.
var ContainerIP = netip.MustParseAddr("198.18.0.20")

const port = 9000

// Run builds the testbed, evacuates and removes it.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Hosts == 0 {
		o.Hosts = 4
	}
	if o.Containers == 0 {
		o.Containers = 24
	}
	if len(o.Concurrency) == 0 {
		o.Concurrency = []int{1, 2, 4}
	}
	if o.Rounds == 0 {
		o.Rounds = 1
	}
	if o.Interval == 0 {
		o.Interval = 10 * time.Millisecond
	}
	if o.CPUs == 0 && o.MemoryBytes == 0 {
		o.CPUs, o.MemoryBytes = 0.05, 32<<20
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Hosts < 2 || o.Containers < 1 || o.Containers > 60 || o.Rounds < 1 {
		return nil, errors.New("want --hosts >= 2, 1 <= --containers <= 60, --rounds >= 1")
	}
	for _, c := range o.Concurrency {
		if c < 1 || c > fleet.MaxConcurrency {
			return nil, fmt.Errorf("concurrency %d: 1 to %d", c, fleet.MaxConcurrency)
		}
	}
	if o.Prefix == "" {
		b := make([]byte, 2)
		_, _ = rand.Read(b)
		o.Prefix = "ev" + hex.EncodeToString(b)
	}
	if o.CompareClass {
		return runClass(ctx, o)
	}
	tb, err := testbed.Up(testbed.Config{Prefix: o.Prefix, AgentBinary: o.Binary, Hosts: o.Hosts,
		HostCapacity: testbed.Capacity{CPUs: 2, Memory: "2GiB"}})
	if err != nil {
		return nil, err
	}
	defer testbed.Down(o.Prefix) //nolint:errcheck // best effort on the way out
	b, err := newBed(ctx, tb)
	if err != nil {
		return nil, err
	}
	res := &Result{Hosts: o.Hosts, Containers: o.Containers}
	rows := map[int]*Row{}
	for _, c := range o.Concurrency {
		rows[c] = &Row{Concurrency: c, Destinations: map[string]int{}}
		res.Rows = append(res.Rows, rows[c])
	}
	for r := range o.Rounds {
		// Rotated each round, so no concurrency always runs first (on a
		// machine that warms up or gets busier).
		for i := range o.Concurrency {
			c := o.Concurrency[(i+r)%len(o.Concurrency)]
			fmt.Fprintf(o.Progress, "round %d: evacuating %d containers from hostA, %d at once\n", r+1, o.Containers, c)
			ev, err := b.evacuate(ctx, o, c)
			if err != nil {
				return res, err
			}
			rows[c].add(ev)
		}
	}
	one := rows[1]
	for _, c := range o.Concurrency {
		row := rows[c]
		row.summarize()
		if one != nil && len(one.EvacuationMs) > 0 {
			row.SpeedupOverOne = mean(one.EvacuationMs) / mean(row.EvacuationMs)
		}
	}
	return res, ctx.Err()
}

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// bed is the testbed with its clients.
type bed struct {
	tb *testbed.Testbed
	fc fleet.Client
	ag map[string]*agent.Client
}

func newBed(ctx context.Context, tb *testbed.Testbed) (*bed, error) {
	tok, err := tb.Token()
	if err != nil {
		return nil, err
	}
	b := &bed{tb: tb, ag: map[string]*agent.Client{},
		fc: fleet.Client{C: controller.NewClient("unix://"+tb.ControllerSocket(), controller.ClientOptions{Token: tok, Timeout: 30 * time.Second})}}
	for _, h := range tb.Hosts() {
		b.ag[h] = agent.NewClient("unix://"+tb.AgentSocket(h), agent.ClientOptions{Token: tok})
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		hs, err := b.fc.Hosts(ctx)
		n := 0
		for _, h := range hs {
			if h.Reachable {
				n++
			}
		}
		if err == nil && n == len(tb.Hosts()) {
			return b, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the agents did not all register with the controller: %d of %d (%v)", n, len(tb.Hosts()), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// evacuation is one evacuation's outcome.
type evacuation struct {
	op          fleet.Operation
	downs, gaps []float64 // per container moved / per connection, ms
	moved       int
	failed      int
	dropped     int
	lost, dup   uint64
	unanswered  uint64
	dest        map[string]int
}

// window is when the evacuation ran, plus a second for the last
// connections' gaps to end (a gap belongs to the window it ended in).
func (ev *evacuation) window() (time.Time, time.Time) {
	return ev.op.Started, ev.op.Ended.Add(time.Second)
}

// add counts one evacuation into the row.
func (row *Row) add(ev *evacuation) {
	row.Evacuations++
	row.EvacuationMs = append(row.EvacuationMs, float64(ev.op.Ended.Sub(ev.op.Started).Microseconds())/1000)
	row.Moved += ev.moved
	row.FailedSteps += ev.failed
	row.Dropped += ev.dropped
	row.RecordsLost += ev.lost
	row.Duplicated += ev.dup
	row.Unanswered += ev.unanswered
	for h, n := range ev.dest {
		row.Destinations[h] += n
	}
	row.downs = append(row.downs, ev.downs...)
	row.gaps = append(row.gaps, ev.gaps...)
}

func (row *Row) summarize() {
	row.Downtime = metrics.Summarize(row.downs)
	row.ClientGap = metrics.Summarize(row.gaps)
}

// evacuate runs one evacuation of hostA at concurrency c, from a fresh
// set of containers, and leaves the testbed as it found it.
func (b *bed) evacuate(ctx context.Context, o Options, c int) (*evacuation, error) {
	bin := "/opt/cflow/bin/" + filepath.Base(o.Binary)
	conns := map[string]*stream.Conn{}
	names := []string{}
	defer func() {
		for _, k := range conns {
			k.Stop(context.Background(), 0)
		}
		for _, h := range b.tb.Hosts() {
			for _, n := range names {
				_ = b.ag[h].Remove(context.Background(), n)
			}
		}
		_, _ = b.fc.SetSchedulable(context.Background(), testbed.HostA, true)
	}()
	ip := ContainerIP
	for i := range o.Containers {
		name := fmt.Sprintf("ev%d", i)
		args := []string{bin, "workload", "stream-server", "--listen", fmt.Sprintf(":%d", port), "--interval", o.Interval.String()}
		if o.MemoryMiB > 0 {
			args = append(args, "--memory-mib", fmt.Sprint(o.MemoryMiB))
		}
		spec := agent.ContainerSpec{Name: name, IP: ip, Args: args}
		spec.Resources.CPUs, spec.Resources.MemoryBytes = o.CPUs, o.MemoryBytes
		if _, err := b.ag[testbed.HostA].Run(ctx, spec); err != nil {
			return nil, fmt.Errorf("run %s: %w", name, err)
		}
		names = append(names, name)
		k, err := b.connect(ip, port, false, o.Interval)
		if err != nil {
			return nil, fmt.Errorf("connect to %s: %w", name, err)
		}
		conns[name] = k
		ip = ip.Next()
	}
	time.Sleep(500 * time.Millisecond)
	op, err := b.fc.Evacuate(ctx, testbed.HostA, c)
	if err != nil {
		return nil, err
	}
	for !op.Finished() {
		if op, err = b.fc.Operation(ctx, op.ID, 10*time.Second); err != nil {
			return nil, err
		}
	}
	time.Sleep(500 * time.Millisecond)
	ev := &evacuation{op: op, dest: map[string]int{}}
	from, to := ev.window()
	for _, s := range op.Steps {
		if s.Status != fleet.StatusSuccess {
			ev.failed++
			fmt.Fprintf(o.Progress, "  step %s: %s: %s\n", s.Container, s.Status, s.Error)
			continue
		}
		ev.moved++
		ev.dest[s.To]++
		ev.downs = append(ev.downs, s.DowntimeMs)
	}
	for name, k := range conns {
		st := k.Stop(ctx, 5*time.Second)
		delete(conns, name)
		if st.Dropped {
			ev.dropped++
		}
		ev.lost += st.Echo.Lost + st.Server.Lost
		ev.dup += st.Echo.Duplicated + st.Server.Duplicated
		ev.unanswered += st.Unanswered()
		ev.gaps = append(ev.gaps, float64(st.MaxGapIn(0, from, to).Microseconds())/1000)
	}
	fmt.Fprintf(o.Progress, "  %s: %s in %s, %d moved\n", op.ID, op.Status, op.Ended.Sub(op.Started).Round(time.Millisecond), ev.moved)
	return ev, nil
}

// connect opens a stream connection from the client to ip:p, retrying
// while the server starts; an observer's keeps every record's latency.
func (b *bed) connect(ip netip.Addr, p int, observer bool, interval time.Duration) (*stream.Conn, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		nc, err := b.tb.Dial(testbed.Client, "tcp4", fmt.Sprintf("%s:%d", ip, p), time.Second)
		if err == nil {
			if observer {
				return stream.StartWithLatency(nc, 10*time.Millisecond, 20*time.Millisecond), nil
			}
			return stream.Start(nc, interval, 20*time.Millisecond), nil
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Print writes the table.
func (r *Result) Print(w io.Writer) {
	if r.Class != nil {
		r.printClass(w)
		return
	}
	fmt.Fprintf(w, "evacuation of %d containers from hostA over %d hosts\n", r.Containers, r.Hosts)
	fmt.Fprintf(w, "%-11s %-14s %-9s %-26s %-26s %-6s %-7s %-5s %s\n", "concurrency", "evacuation ms", "speedup", "downtime ms p50/p99/max", "client gap ms p50/p99/max", "moved", "failed", "drops", "lost/dup/unanswered")
	for _, row := range r.Rows {
		fmt.Fprintf(w, "%-11d %-14.0f %-9.2f %-26s %-26s %-6d %-7d %-5d %d/%d/%d\n", row.Concurrency, mean(row.EvacuationMs), row.SpeedupOverOne,
			fmt.Sprintf("%.1f/%.1f/%.1f", row.Downtime.P50, row.Downtime.P99, row.Downtime.Max),
			fmt.Sprintf("%.1f/%.1f/%.1f", row.ClientGap.P50, row.ClientGap.P99, row.ClientGap.Max),
			row.Moved, row.FailedSteps, row.Dropped, row.RecordsLost, row.Duplicated, row.Unanswered)
	}
}

// WriteJSON writes the result.
func (r *Result) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
