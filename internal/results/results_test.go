package results

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/loadgen"
	"github.com/containerflow/containerflow/internal/metrics"
	"github.com/containerflow/containerflow/internal/migration"
	"github.com/containerflow/containerflow/internal/workload/ws"
)

// The header starts with exactly the seed's 19 columns, in its order.
func TestHeader(t *testing.T) {
	want := "timestamp,timestamp_unix_milli,elapsed_s,connected_clients,total_clients,bytes_sent,bytes_received,uptime_s," +
		"lg_connected_clients,ws_rtt_avg_ms,ws_rtt_p50_ms,ws_rtt_p95_ms,ws_rtt_p99_ms,ws_rtt_max_ms,ws_jitter_ms," +
		"connection_drops,cpu_percent,memory_mb,migration_event"
	if got := strings.Join(Columns()[:19], ","); got != want {
		t.Fatalf("first 19 columns:\n%s\nwant\n%s", got, want)
	}
	seen := map[string]bool{}
	for _, c := range Columns() {
		if seen[c] {
			t.Errorf("duplicate column %s", c)
		}
		seen[c] = true
	}
}

func TestCSVRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), MetricsFile)
	w, err := CreateCSV(path)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.UnixMilli(1_700_000_000_123)
	lg := &loadgen.Metrics{ConnectedClients: 4, AvgRttMs: 0.25, P50RttMs: 0.2, P95RttMs: 0.4, P99RttMs: 0.5, MaxRttMs: 0.61,
		JitterMs: 0.05, ConnectionDrops: 1, UncappedP99RttMs: 1200, UncappedMaxRttMs: 1300, FrameGapMaxMs: 35.5, Reconnects: 1,
		SeqTotals: loadgen.SeqTotals{Received: 900, Lost: 2, Duplicated: 1}}
	rows := []Row{
		{Time: t0, Elapsed: time.Second, Host: "hostA",
			Server:  &ws.Metrics{ConnectedClients: 4, TotalClients: 5, BytesSent: 123456, BytesReceived: 789, UptimeSeconds: 12.34, CPUPercent: 1.5, MemoryMB: 7.25},
			Loadgen: lg},
		// Both scrapes failed (the server is frozen, say): empty cells.
		{Time: t0.Add(time.Second), Elapsed: 2 * time.Second, MigrationEvent: true, MigrationActive: true, Host: "hostB"},
		// No echo in the interval: RTT cells empty, counters present.
		{Time: t0.Add(2 * time.Second), Elapsed: 3 * time.Second, Host: "hostB",
			Loadgen: &loadgen.Metrics{ConnectedClients: 4, AvgRttMs: metrics.None(), P50RttMs: metrics.None(), P95RttMs: metrics.None(),
				P99RttMs: metrics.None(), MaxRttMs: metrics.None(), JitterMs: metrics.None(), UncappedP99RttMs: metrics.None(), UncappedMaxRttMs: metrics.None()}},
	}
	for _, r := range rows {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	tb, err := ReadCSV(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(tb.Header, Columns()) || tb.Len() != 3 {
		t.Fatalf("header %v, %d rows", tb.Header, tb.Len())
	}
	check := func(col string, want ...float64) {
		t.Helper()
		got := tb.Float(col)
		for i := range want {
			if math.IsNaN(want[i]) != math.IsNaN(got[i]) || (!math.IsNaN(want[i]) && math.Abs(got[i]-want[i]) > 1e-9) {
				t.Errorf("%s = %v, want %v", col, got, want)
				return
			}
		}
	}
	nan := math.NaN()
	check("timestamp_unix_milli", 1_700_000_000_123, 1_700_000_001_123, 1_700_000_002_123)
	check("elapsed_s", 1, 2, 3)
	check("connected_clients", 4, nan, nan)
	check("bytes_sent", 123456, nan, nan)
	check("uptime_s", 12.3, nan, nan)
	check("cpu_percent", 1.5, nan, nan)
	check("memory_mb", 7.25, nan, nan)
	check("lg_connected_clients", 4, nan, 4)
	check("ws_rtt_p50_ms", 0.2, nan, nan)
	check("ws_rtt_max_ms", 0.61, nan, nan)
	check("ws_jitter_ms", 0.05, nan, nan)
	check("connection_drops", 1, nan, 0)
	check("migration_event", 0, 1, 0)
	check("migration_active", 0, 1, 0)
	check("frames_lost", 2, nan, 0)
	check("frame_gap_max_ms", 35.5, nan, 0)
	check("ws_rtt_uncapped_max_ms", 1300, nan, nan)
	if h := tb.Str("container_host"); !reflect.DeepEqual(h, []string{"hostA", "hostB", "hostB"}) {
		t.Errorf("hosts %v", h)
	}
	if ts := tb.Str("timestamp")[0]; ts != t0.Format(time.RFC3339Nano) {
		t.Errorf("timestamp %q", ts)
	}
	// Empty means empty, not "0" or "NaN".
	if raw := tb.Rows[1][tb.idx["ws_rtt_p50_ms"]]; raw != "" {
		t.Errorf("failed scrape wrote %q", raw)
	}
}

// A seed CSV (19 columns) reads too: the plots work on the seed's runs.
func TestReadSeedCSV(t *testing.T) {
	seed := strings.Join(SeedColumns, ",") + "\n2026-02-18T22:24:52Z,1771453492000,1.000,4,4,1000,200,1.0,4,0.350,0.320,0.420,0.500,0.700,0.050,0,1.50,9.00,0\n"
	tb, err := ParseCSV(strings.NewReader(seed))
	if err != nil {
		t.Fatal(err)
	}
	if tb.Float("ws_rtt_p50_ms")[0] != 0.32 || !math.IsNaN(tb.Float("frames_lost")[0]) {
		t.Fatalf("%v %v", tb.Float("ws_rtt_p50_ms"), tb.Float("frames_lost"))
	}
}

func TestTimingRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []int{10, 2, 1} {
		r := migration.Record{Container: "ws", SourceNode: "hostA", TargetNode: "hostB", Status: migration.StatusSuccess,
			CheckpointB: int64(1000 * n), MigrationStartNs: int64(n) * 1e9, CheckpointMs: 150.5, TransferMs: 9.75,
			RestoreMs: 151.25, SwitchMs: 0.7, TimeToReadyMs: 331.3, TotalMs: 383.6}
		if n == 2 {
			r.Status, r.Error = migration.StatusRolledBack, "restore: boom\nsecond line"
		}
		if err := r.WriteFiles(TimingBase(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := LoadTimings(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].N != 1 || got[1].N != 2 || got[2].N != 10 {
		t.Fatalf("order: %+v", got)
	}
	if r := got[2]; r.CheckpointB != 10000 || r.CheckpointMs != 150.5 || r.RestoreMs != 151.25 || r.TimeToReadyMs != 331.3 || r.TargetNode != "hostB" {
		t.Fatalf("record 10: %+v", r)
	}
	if got[1].Status != migration.StatusRolledBack || got[1].Error != "restore: boom second line" {
		t.Fatalf("record 2: %+v", got[1])
	}
	b, _ := os.ReadFile(TimingBase(dir, 1) + ".txt")
	for _, k := range []string{"checkpoint_ms=150.500\n", "transfer_ms=9.750\n", "restore_ms=151.250\n", "switch_ms=0.700\n", "time_to_ready_ms=331.300\n", "total_ms=383.600\n", "checkpoint_size_bytes=1000\n"} {
		if !bytes.Contains(b, []byte(k)) {
			t.Errorf("timing file lacks %q:\n%s", k, b)
		}
	}
}

// Summary statistics against values computed by hand.
func TestCompute(t *testing.T) {
	t0 := time.Unix(1000, 0)
	rec := func(ckpt, xfer, rest, sw, ready float64) *migration.Record {
		return &migration.Record{Status: migration.StatusSuccess, CheckpointMs: ckpt, TransferMs: xfer, RestoreMs: rest, SwitchMs: sw, TimeToReadyMs: ready, TotalMs: ready + 50, CheckpointB: 1000}
	}
	outs := []Outcome{
		{N: 1, From: "hostA", To: "hostB", Start: t0, End: t0.Add(400 * time.Millisecond), Record: rec(100, 10, 200, 1, 300)},
		{N: 2, From: "hostB", To: "hostA", Start: t0.Add(10 * time.Second), End: t0.Add(10400 * time.Millisecond), Record: rec(200, 20, 100, 3, 400)},
		{N: 3, From: "hostA", To: "hostB", Start: t0.Add(20 * time.Second), End: t0.Add(20100 * time.Millisecond),
			Record: &migration.Record{Status: migration.StatusRolledBack, Error: "restore failed"}, Err: errors.New("agent: restore failed (HTTP 500)")},
		{N: 4, From: "hostA", To: "hostB", Start: t0.Add(30 * time.Second), End: t0.Add(30400 * time.Millisecond), Record: rec(300, 30, 300, 2, 500)},
	}
	gap := func(at time.Duration, ms float64) loadgen.Gap {
		return loadgen.Gap{EndUnixNs: t0.Add(at).UnixNano(), Ms: ms}
	}
	rep := loadgen.Report{Connections: []loadgen.ConnReport{
		{Connected: true, SeqTotals: loadgen.SeqTotals{Received: 100}, Gaps: []loadgen.Gap{gap(350*time.Millisecond, 320), gap(10450*time.Millisecond, 420)}, MaxGapMs: 420},
		{Connected: true, SeqTotals: loadgen.SeqTotals{Received: 100, Lost: 1}, Drops: 1, Reconnects: 1,
			Gaps: []loadgen.Gap{gap(360*time.Millisecond, 340), gap(30600*time.Millisecond, 520)}, MaxGapMs: 520},
	}}
	s := Compute(Params{Migrations: 4}, outs, rep, 2*time.Second, []float64{0.2, math.NaN(), 0.4})
	if s.Migrations != 4 || s.Succeeded != 3 || s.Failed != 1 || s.ConnectionDrops != 1 || s.Reconnects != 1 || s.FramesLost != 1 || s.FramesReceived != 200 || s.ConnectionsUp != 2 {
		t.Fatalf("counts %+v", s)
	}
	// Downtimes per successful migration: max(320, 340)=340, 420, 520.
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	d := s.DowntimeMs
	if d.N != 3 || d.P50 != 420 || d.Max != 520 || !near(d.Mean, 1280.0/3) || !near(d.P95, 510) || !near(d.P99, 518) {
		t.Fatalf("downtime %+v", d)
	}
	// time to ready 300, 400, 500: p95 = 400 + 0.9*100 = 490; sd = 100.
	if r := s.TimeToReadyMs; r.P50 != 400 || !near(r.P95, 490) || !near(r.P99, 498) || r.Mean != 400 || !near(r.SD, 100) {
		t.Fatalf("time to ready %+v", r)
	}
	// checkpoint 100, 200, 300: mean 200, sd 100; switch 1, 3, 2: mean 2, sd 1.
	if p := s.PhaseMs["checkpoint"]; p.Mean != 200 || !near(p.SD, 100) {
		t.Fatalf("checkpoint %+v", p)
	}
	if p := s.PhaseMs["switch"]; p.Mean != 2 || !near(p.SD, 1) {
		t.Fatalf("switch %+v", p)
	}
	if p := s.PhaseMs["transfer"]; !near(p.Mean, 20) || !near(p.SD, 10) {
		t.Fatalf("transfer %+v", p)
	}
	if pm := s.PerMigration[2]; pm.Status != migration.StatusRolledBack || pm.Error != "restore failed" || pm.DowntimeMs.Valid() {
		t.Fatalf("failed migration %+v", pm)
	}
	if r := s.RTTp50Ms; r.N != 2 || !near(r.Mean, 0.3) {
		t.Fatalf("rtt %+v", r)
	}
	path := filepath.Join(t.TempDir(), SummaryFile)
	if err := s.Write(path); err != nil {
		t.Fatal(err)
	}
	back, err := ReadSummary(path)
	if err != nil {
		t.Fatal(err)
	}
	if back.DowntimeMs != s.DowntimeMs || back.PhaseMs["restore"] != s.PhaseMs["restore"] || back.PerMigration[2].DowntimeMs.Valid() {
		t.Fatalf("summary round trip: %+v", back)
	}
}

// A gap that began just before the next migration's request (the last
// frame before its freeze) counts for that migration only, even when the
// previous one's settle window reaches past the request.
func TestComputeWindowsDoNotOverlap(t *testing.T) {
	t0 := time.Unix(2000, 0)
	ok := &migration.Record{Status: migration.StatusSuccess, TimeToReadyMs: 300}
	outs := []Outcome{
		{N: 1, Start: t0, End: t0.Add(400 * time.Millisecond), Record: ok},
		{N: 2, Start: t0.Add(5 * time.Second), End: t0.Add(5400 * time.Millisecond), Record: ok},
	}
	rep := loadgen.Report{Connections: []loadgen.ConnReport{{Gaps: []loadgen.Gap{
		{EndUnixNs: t0.Add(350 * time.Millisecond).UnixNano(), Ms: 330},
		{EndUnixNs: t0.Add(5500 * time.Millisecond).UnixNano(), Ms: 600}, // began at 4.9 s
	}}}}
	s := Compute(Params{}, outs, rep, 10*time.Second, nil)
	if a, b := s.PerMigration[0].DowntimeMs, s.PerMigration[1].DowntimeMs; a != 330 || b != 600 {
		t.Fatalf("downtimes %v %v, want 330 600", a, b)
	}
}
