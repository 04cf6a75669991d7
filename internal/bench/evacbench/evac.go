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
	Progress    io.Writer
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
	SpeedupOverOne float64 `json:"speedup_over_1"`
}

// Result is the whole run.
type Result struct {
	Hosts      int    `json:"hosts"`
	Containers int    `json:"containers"`
	Rows       []*Row `json:"rows"`
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
	var gaps, downs = map[int][]float64{}, map[int][]float64{}
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
			if err := b.evacuate(ctx, o, c, rows[c], &downs, &gaps); err != nil {
				return res, err
			}
		}
	}
	one := rows[1]
	for _, c := range o.Concurrency {
		row := rows[c]
		row.Downtime = metrics.Summarize(downs[c])
		row.ClientGap = metrics.Summarize(gaps[c])
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

// evacuate runs one evacuation of hostA at concurrency c, from a fresh
// set of containers, and leaves the testbed as it found it.
func (b *bed) evacuate(ctx context.Context, o Options, c int, row *Row, downs, gaps *map[int][]float64) error {
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
		spec := agent.ContainerSpec{Name: name, IP: ip, Args: []string{bin, "workload", "stream-server",
			"--listen", fmt.Sprintf(":%d", port), "--interval", o.Interval.String()}}
		spec.Resources.CPUs, spec.Resources.MemoryBytes = o.CPUs, o.MemoryBytes
		if _, err := b.ag[testbed.HostA].Run(ctx, spec); err != nil {
			return fmt.Errorf("run %s: %w", name, err)
		}
		names = append(names, name)
		k, err := b.connect(ip)
		if err != nil {
			return fmt.Errorf("connect to %s: %w", name, err)
		}
		conns[name] = k
		ip = ip.Next()
	}
	time.Sleep(500 * time.Millisecond)
	op, err := b.fc.Evacuate(ctx, testbed.HostA, c)
	if err != nil {
		return err
	}
	for !op.Finished() {
		if op, err = b.fc.Operation(ctx, op.ID, 10*time.Second); err != nil {
			return err
		}
	}
	time.Sleep(500 * time.Millisecond)
	row.Evacuations++
	row.EvacuationMs = append(row.EvacuationMs, float64(op.Ended.Sub(op.Started).Microseconds())/1000)
	window := [2]time.Time{op.Started, op.Ended.Add(time.Second)}
	for _, s := range op.Steps {
		if s.Status != fleet.StatusSuccess {
			row.FailedSteps++
			fmt.Fprintf(o.Progress, "  step %s: %s: %s\n", s.Container, s.Status, s.Error)
			continue
		}
		row.Moved++
		row.Destinations[s.To]++
		(*downs)[c] = append((*downs)[c], s.DowntimeMs)
	}
	for name, k := range conns {
		st := k.Stop(ctx, 5*time.Second)
		delete(conns, name)
		if st.Dropped {
			row.Dropped++
		}
		row.RecordsLost += st.Echo.Lost + st.Server.Lost
		row.Duplicated += st.Echo.Duplicated + st.Server.Duplicated
		row.Unanswered += st.Unanswered()
		(*gaps)[c] = append((*gaps)[c], float64(st.MaxGapIn(0, window[0], window[1]).Microseconds())/1000)
	}
	fmt.Fprintf(o.Progress, "  %s: %s in %s, %d moved\n", op.ID, op.Status, op.Ended.Sub(op.Started).Round(time.Millisecond), row.Moved)
	return nil
}

func (b *bed) connect(ip netip.Addr) (*stream.Conn, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		nc, err := b.tb.Dial(testbed.Client, "tcp4", fmt.Sprintf("%s:%d", ip, port), time.Second)
		if err == nil {
			return stream.Start(nc, 10*time.Millisecond, 20*time.Millisecond), nil
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Print writes the table.
func (r *Result) Print(w io.Writer) {
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
