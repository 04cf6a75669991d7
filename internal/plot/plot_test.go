package plot

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/loadgen"
	"github.com/containerflow/containerflow/internal/metrics"
	"github.com/containerflow/containerflow/internal/migration"
	"github.com/containerflow/containerflow/internal/results"
	"github.com/containerflow/containerflow/internal/workload/ws"
)

// synthetic writes a run of n migrations: 1 s rows, a freeze at each.
func synthetic(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	w, err := results.CreateCSV(filepath.Join(dir, results.MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_800_000_000, 0)
	var outs []results.Outcome
	host := "hostA"
	var sent, recv uint64
	for i := 0; i < 10+10*n; i++ {
		at := t0.Add(time.Duration(i) * time.Second)
		frozen := i >= 10 && i%10 == 0
		row := results.Row{Time: at, Elapsed: time.Duration(i) * time.Second, Host: host, MigrationEvent: frozen, MigrationActive: frozen}
		if frozen {
			to := map[string]string{"hostA": "hostB", "hostB": "hostA"}[host]
			k := len(outs) + 1
			rec := migration.Record{Container: "ws", SourceNode: host, TargetNode: to, Status: migration.StatusSuccess,
				MigrationStartNs: at.Add(-700 * time.Millisecond).UnixNano(), MigrationEndNs: at.Add(-200 * time.Millisecond).UnixNano(),
				CheckpointMs: 150 + float64(k), TransferMs: 10, RestoreMs: 150, SwitchMs: 1, ResumeMs: 3, TimeToReadyMs: 320 + float64(k), TotalMs: 400}
			if k == 2 {
				rec.Status, rec.Error = migration.StatusRolledBack, "restore failed"
			} else {
				host = to
			}
			if err := rec.WriteFiles(results.TimingBase(dir, k)); err != nil {
				t.Fatal(err)
			}
			outs = append(outs, results.Outcome{N: k, From: rec.SourceNode, To: to, Start: at.Add(-700 * time.Millisecond), End: at.Add(-200 * time.Millisecond), Record: &rec})
		}
		sent += 72 * 1024
		recv += 1400
		if !frozen {
			row.Server = &ws.Metrics{ConnectedClients: 4, TotalClients: 4, BytesSent: sent, BytesReceived: recv, CPUPercent: 2, MemoryMB: 9, RSSMB: 14}
		}
		lg := &loadgen.Metrics{ConnectedClients: 4, TotalClients: 4, BytesReceived: sent, FrameGapMaxMs: 34,
			AvgRttMs: 0.3, P50RttMs: 0.25, P95RttMs: 0.5, P99RttMs: 0.6, MaxRttMs: 0.7, JitterMs: 0.05, UncappedP99RttMs: 0.6, UncappedMaxRttMs: 0.7}
		if frozen {
			lg.FrameGapMaxMs = 350
			lg.P50RttMs, lg.P95RttMs, lg.P99RttMs, lg.MaxRttMs, lg.AvgRttMs, lg.JitterMs = metrics.None(), metrics.None(), metrics.None(), metrics.None(), metrics.None(), metrics.None()
		}
		row.Loadgen = lg
		if err := w.Write(row); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	s := results.Compute(results.Params{Migrations: n, Connections: 4, FPS: 30, SteadyStateS: 10, PostMigrationS: 10}, outs, loadgen.Report{}, 10*time.Second, nil)
	for i := range s.PerMigration {
		s.PerMigration[i].DowntimeMs = metrics.Opt(340 + float64(i))
	}
	if err := s.Write(filepath.Join(dir, results.SummaryFile)); err != nil {
		t.Fatal(err)
	}
	return dir
}

func checkAll(t *testing.T, dir string) {
	t.Helper()
	names, err := All(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 12 {
		t.Fatalf("%d plots: %v", len(names), names)
	}
	for _, n := range Names() {
		for f, magic := range map[string]string{"png": "\x89PNG", "pdf": "%PDF-", "svg": "<?xml"} {
			b, err := os.ReadFile(filepath.Join(dir, n+"."+f))
			if err != nil || !bytes.HasPrefix(b, []byte(magic)) {
				t.Errorf("%s.%s: %v", n, f, err)
			}
		}
	}
}

func TestAllPlots(t *testing.T) { checkAll(t, synthetic(t, 3)) }

// A run without migrations (and so without timing files) still gets
// every plot, marked as having nothing to show.
func TestNoMigrations(t *testing.T) { checkAll(t, synthetic(t, 0)) }

// The seed's CSV (19 columns, no summary) plots too.
func TestSeedRun(t *testing.T) {
	dir := synthetic(t, 2)
	os.Remove(filepath.Join(dir, results.SummaryFile))
	tab, err := results.ReadCSV(filepath.Join(dir, results.MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString(strings.Join(results.SeedColumns, ",") + "\n")
	for _, r := range tab.Rows {
		b.WriteString(strings.Join(r[:19], ",") + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, results.MetricsFile), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	checkAll(t, dir)
}

func TestNiceTicks(t *testing.T) {
	var labels []string
	for _, tk := range (niceTicks{}).Ticks(0, 27) {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	if strings.Join(labels, " ") != "0 5 10 15 20 25" {
		t.Fatalf("ticks %v", labels)
	}
	r := &run{t: []float64{0, 1, 2, 3, 4}}
	r.tab, _ = results.ParseCSV(strings.NewReader("x,bytes_sent\n0,100\n1,1124\n2,\n3,4196\n4,3000\n"))
	got := r.rate("bytes_sent", 1024)
	// 1 KiB/s; missing; 3072 bytes over 2 s = 1.5 KiB/s; counter went back: missing.
	if !math.IsNaN(got[0]) || got[1] != 1 || !math.IsNaN(got[2]) || got[3] != 1.5 || !math.IsNaN(got[4]) {
		t.Fatalf("rate %v", got)
	}
}

func TestLogTicks(t *testing.T) {
	var labels []string
	for _, tk := range (logTicks{}).Ticks(0.3, 12) {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	if strings.Join(labels, " ") != "0.5 1 2 5 10" {
		t.Fatalf("few decades: %v", labels)
	}
	labels = nil
	for _, tk := range (logTicks{}).Ticks(0.05, 2000) {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	if strings.Join(labels, " ") != "0.1 1 10 100 1000" {
		t.Fatalf("many decades: %v", labels)
	}
}
