// Package migratebench measures live migration from the client's side:
// it runs the sequence-checked stream workload in a container on the
// emulated testbed, migrates the container back and forth, and reports
// per-phase timings next to the downtime the client actually saw (the
// longest silence on any connection around each migration), with every
// lost, duplicated or unanswered record counted.
package migratebench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/containerflow/containerflow/internal/agent"
	"github.com/containerflow/containerflow/internal/metrics"
	"github.com/containerflow/containerflow/internal/migration"
	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/workload/stream"
)

// Options configures a run.
type Options struct {
	Migrations  int
	Connections int
	Interval    time.Duration // between records, each direction
	Settle      time.Duration // after each migration
	Binary      string        // cflow binary: agents and the in-container server
	Prefix      string        // testbed prefix; random when empty
	RecordsDir  string        // when set, migration_timing_N.{txt,json} go here
	Request     agent.MigrateRequest
	// CompareHandoff alternates migrations with and without the handoff of
	// clients' frames caught during the freeze, and reports both, measured
	// side by side in one run.
	CompareHandoff bool
	Progress       io.Writer
}

// PerMigration is one row of the result.
type PerMigration struct {
	N           int              `json:"n"`
	From        string           `json:"from"`
	To          string           `json:"to"`
	Status      string           `json:"status"`
	Error       string           `json:"error,omitempty"`
	Handoff     bool             `json:"handoff"`
	DowntimeMs  float64          `json:"downtime_ms"`
	EchoGapMs   float64          `json:"echo_gap_ms"`
	StreamGapMs float64          `json:"stream_gap_ms"`
	Record      migration.Record `json:"record"`
}

// Result is what the benchmark prints and writes.
type Result struct {
	Migrations      int      `json:"migrations"`
	Failed          int      `json:"failed"`
	Connections     int      `json:"connections"`
	ConnectionDrops int      `json:"connection_drops"`
	DropErrors      []string `json:"drop_errors,omitempty"`
	BytesLost       uint64   `json:"bytes_lost"`
	BytesDuplicated uint64   `json:"bytes_duplicated"`
	RecordsReorder  uint64   `json:"records_reordered"`
	BytesSent       uint64   `json:"bytes_sent"`
	// DowntimeMs is the longest silence on any connection in either
	// direction around each migration; EchoGapMs only counts the echoes of
	// the client's records (which wait for the client's retransmission),
	// StreamGapMs only the server's own stream.
	DowntimeMs    metrics.Dist `json:"downtime_ms"`
	EchoGapMs     metrics.Dist `json:"echo_gap_ms"`
	StreamGapMs   metrics.Dist `json:"stream_gap_ms"`
	TimeToReadyMs metrics.Dist `json:"time_to_ready_ms"`
	// With CompareHandoff: the downtime of the migrations with and without
	// the handoff.
	DowntimeHandoffMs   *metrics.Dist               `json:"downtime_with_handoff_ms,omitempty"`
	DowntimeNoHandoffMs *metrics.Dist               `json:"downtime_without_handoff_ms,omitempty"`
	PhaseMs             map[string]metrics.MeanSDOf `json:"phase_ms"`
	CheckpointBytes     metrics.Dist                `json:"checkpoint_size_bytes"`
	PerMigration        []PerMigration              `json:"per_migration"`
	Options             struct {
		Interval string `json:"interval"`
		Settle   string `json:"settle"`
	} `json:"options"`
}

// ContainerIP is where the workload runs.
var ContainerIP = netip.MustParseAddr("198.18.0.2")

const port = 9000

// Run performs the benchmark on a fresh testbed it removes afterwards.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Migrations < 1 || o.Connections < 1 || o.Interval <= 0 || o.Settle < 0 {
		return nil, fmt.Errorf("migrations and connections must be >= 1 and interval > 0")
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Prefix == "" {
		b := make([]byte, 2)
		_, _ = rand.Read(b)
		o.Prefix = "bm" + hex.EncodeToString(b)
	}
	tb, err := testbed.Up(testbed.Config{Prefix: o.Prefix, AgentBinary: o.Binary})
	if err != nil {
		return nil, err
	}
	defer testbed.Down(o.Prefix) //nolint:errcheck // best effort on the way out
	tok, err := tb.Token()
	if err != nil {
		return nil, err
	}
	clients := map[string]*agent.Client{}
	for _, h := range testbed.Hosts {
		clients[h] = agent.NewClient("unix://"+tb.AgentSocket(h), agent.ClientOptions{Token: tok})
	}
	_, err = clients[testbed.HostA].Run(ctx, agent.ContainerSpec{
		Name: "stream", IP: ContainerIP,
		Args: []string{"/opt/cflow/bin/" + filepath.Base(o.Binary), "workload", "stream-server",
			"--listen", fmt.Sprintf(":%d", port), "--interval", o.Interval.String()},
	})
	if err != nil {
		return nil, fmt.Errorf("start workload: %w", err)
	}
	conns := make([]*stream.Conn, 0, o.Connections)
	addr := netip.AddrPortFrom(ContainerIP, port).String()
	defer func() {
		for _, c := range conns {
			c.Stop(context.Background(), 0)
		}
	}()
	for i := 0; i < o.Connections; i++ {
		deadline := time.Now().Add(10 * time.Second)
		for {
			nc, derr := tb.Dial(testbed.Client, "tcp4", addr, time.Second)
			if derr == nil {
				conns = append(conns, stream.Start(nc, o.Interval, 20*time.Millisecond))
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("connect to the workload: %w", derr)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	fmt.Fprintf(o.Progress, "%d connections streaming every %v in each direction; warming up\n", o.Connections, o.Interval)
	sleep(ctx, time.Second)

	res := &Result{Migrations: o.Migrations, Connections: o.Connections}
	res.Options.Interval, res.Options.Settle = o.Interval.String(), o.Settle.String()
	type window struct{ from, to time.Time }
	windows := make([]window, 0, o.Migrations)
	where := testbed.HostA
	for n := 1; n <= o.Migrations && ctx.Err() == nil; n++ {
		to := testbed.HostB
		if where == testbed.HostB {
			to = testbed.HostA
		}
		req := o.Request
		req.To = to
		if o.CompareHandoff {
			req.NoHandoff = n%2 == 0
		}
		start := time.Now()
		r, merr := clients[where].Migrate(ctx, "stream", req)
		end := time.Now()
		pm := PerMigration{N: n, From: where, To: to, Handoff: !req.NoHandoff}
		if r != nil {
			pm.Record = r.Record
			pm.Status = r.Record.Status
		}
		if merr != nil {
			pm.Error = merr.Error()
			res.Failed++
			if pm.Status == "" {
				pm.Status = "failed"
			}
		} else {
			where = to
		}
		if o.RecordsDir != "" {
			rec := pm.Record
			if rec.Status == "" {
				rec = migration.Record{Container: "stream", SourceNode: pm.From, TargetNode: to, Status: "failed", Error: pm.Error}
			}
			if err := os.MkdirAll(o.RecordsDir, 0o755); err != nil {
				return nil, err
			}
			if err := rec.WriteFiles(filepath.Join(o.RecordsDir, fmt.Sprintf("migration_timing_%d", n))); err != nil {
				return nil, err
			}
		}
		res.PerMigration = append(res.PerMigration, pm)
		windows = append(windows, window{start, end})
		sleep(ctx, o.Settle)
		fmt.Fprintf(o.Progress, "migration %d/%d %s -> %s: %s, time to ready %.1f ms\n", n, o.Migrations, pm.From, to, pm.Status, pm.Record.TimeToReadyMs)
	}

	var final []stream.ConnStats
	for _, c := range conns {
		final = append(final, c.Stop(context.Background(), 5*time.Second))
	}
	conns = nil
	var down, ready, echoGaps, streamGaps, downHO, downNoHO []float64
	phases := map[string][]float64{}
	var sizes []float64
	for i, pm := range res.PerMigration {
		// A migration's window runs from its request to the next one (or
		// the settle time after its answer, for the last), so a connection
		// still silent after the answer counts, and no gap counts twice.
		w := windows[i]
		to := w.to.Add(o.Settle)
		if i+1 < len(windows) {
			to = windows[i+1].from
		}
		var worst, echo, srv time.Duration
		for _, s := range final {
			worst = max(worst, s.MaxGapIn(0, w.from, to))
			echo = max(echo, s.MaxGapIn(stream.KindEcho, w.from, to))
			srv = max(srv, s.MaxGapIn(stream.KindServer, w.from, to))
		}
		res.PerMigration[i].DowntimeMs = msOf(worst)
		res.PerMigration[i].EchoGapMs = msOf(echo)
		res.PerMigration[i].StreamGapMs = msOf(srv)
		if pm.Status != migration.StatusSuccess {
			continue
		}
		down = append(down, res.PerMigration[i].DowntimeMs)
		if pm.Handoff {
			downHO = append(downHO, res.PerMigration[i].DowntimeMs)
		} else {
			downNoHO = append(downNoHO, res.PerMigration[i].DowntimeMs)
		}
		echoGaps = append(echoGaps, msOf(echo))
		streamGaps = append(streamGaps, msOf(srv))
		r := pm.Record
		ready = append(ready, r.TimeToReadyMs)
		sizes = append(sizes, float64(r.CheckpointB))
		for k, v := range map[string]float64{"prepare": r.PrepareMs, "freeze": r.FreezeMs, "checkpoint": r.CheckpointMs,
			"transfer": r.TransferMs, "restore": r.RestoreMs, "switch": r.SwitchMs, "resume": r.ResumeMs, "total": r.TotalMs} {
			phases[k] = append(phases[k], v)
		}
	}
	for i, s := range final {
		if s.Dropped {
			res.ConnectionDrops++
			res.DropErrors = append(res.DropErrors, fmt.Sprintf("connection %d: %s", i, s.Err))
		}
		lost := s.Echo.Lost + s.Server.Lost + s.Unanswered()
		res.BytesLost += lost * stream.RecordSize
		res.BytesDuplicated += (s.Echo.Duplicated + s.Server.Duplicated) * stream.RecordSize
		res.RecordsReorder += s.Echo.Reordered + s.Server.Reordered
		res.BytesSent += s.Sent * stream.RecordSize
	}
	res.DowntimeMs = metrics.Summarize(down)
	if o.CompareHandoff {
		ho, noho := metrics.Summarize(downHO), metrics.Summarize(downNoHO)
		res.DowntimeHandoffMs, res.DowntimeNoHandoffMs = &ho, &noho
	}
	res.EchoGapMs = metrics.Summarize(echoGaps)
	res.StreamGapMs = metrics.Summarize(streamGaps)
	res.TimeToReadyMs = metrics.Summarize(ready)
	res.CheckpointBytes = metrics.Summarize(sizes)
	res.PhaseMs = map[string]metrics.MeanSDOf{}
	for k, v := range phases {
		res.PhaseMs[k] = metrics.MeanSDSummary(v)
	}
	return res, ctx.Err()
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// Print writes the human-readable summary.
func (r *Result) Print(w io.Writer) {
	fmt.Fprintf(w, "\nmigrations %d, failed %d, connections %d, connection drops %d, bytes lost %d, duplicated %d (of %d sent)\n",
		r.Migrations, r.Failed, r.Connections, r.ConnectionDrops, r.BytesLost, r.BytesDuplicated, r.BytesSent)
	fmt.Fprintf(w, "%-22s %8s %8s %8s %8s %8s\n", "ms", "p50", "p95", "p99", "max", "mean")
	for _, row := range []struct {
		name string
		d    metrics.Dist
	}{{"client-visible downtime", r.DowntimeMs}, {"  echo direction", r.EchoGapMs}, {"  server stream", r.StreamGapMs}, {"time to ready", r.TimeToReadyMs}} {
		fmt.Fprintf(w, "%-22s %8.1f %8.1f %8.1f %8.1f %8.1f\n", row.name, row.d.P50, row.d.P95, row.d.P99, row.d.Max, row.d.Mean)
	}
	if r.DowntimeHandoffMs != nil {
		for _, row := range []struct {
			name string
			d    *metrics.Dist
		}{{"downtime, handoff on", r.DowntimeHandoffMs}, {"downtime, handoff off", r.DowntimeNoHandoffMs}} {
			fmt.Fprintf(w, "%-22s %8.1f %8.1f %8.1f %8.1f %8.1f  (n=%d)\n", row.name, row.d.P50, row.d.P95, row.d.P99, row.d.Max, row.d.Mean, row.d.N)
		}
	}
	fmt.Fprintf(w, "%-22s %8s %8s\n", "phase (ms)", "mean", "sd")
	for _, k := range []string{"prepare", "freeze", "checkpoint", "transfer", "restore", "switch", "resume", "total"} {
		p := r.PhaseMs[k]
		fmt.Fprintf(w, "%-22s %8.1f %8.1f\n", k, p.Mean, p.SD)
	}
	fmt.Fprintf(w, "checkpoint size: mean %.0f bytes\n", r.CheckpointBytes.Mean)
}

// WriteJSON writes the result to path.
func (r *Result) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
