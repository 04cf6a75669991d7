package experiment_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/cli"
	"github.com/containerflow/containerflow/internal/experiment"
	"github.com/containerflow/containerflow/internal/nsrun"
	"github.com/containerflow/containerflow/internal/plot"
	"github.com/containerflow/containerflow/internal/results"
)

// The test binary doubles as the cflow binary: the testbed starts it as
// `agent serve`, the container runs it as `workload ws-server` and the
// experiment as `loadgen`.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "agent", "workload", "switch", "loadgen", "testbed": // testbed: impair-relay
			os.Exit(cli.Execute())
		}
	}
	os.Exit(m.Run())
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// A short experiment on the testbed: every output is there and well
// formed, and the run lost no connection and no frame.
func TestShortExperiment(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for the testbed, runc and CRIU (CI runs as root)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	prefix := "ex" + hex.EncodeToString(b)
	out := t.TempDir()
	res, err := experiment.Run(context.Background(), experiment.Options{
		SteadyState: 3 * time.Second, PostMigration: 3 * time.Second, Migrations: 2, Connections: 4, FPS: 30,
		OutDir: out, Binary: self, Prefix: prefix, Progress: testWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	if left, _ := nsrun.List(prefix + "-"); len(left) > 0 {
		t.Errorf("testbed not torn down: %v", left)
	}
	dir := res.Dir
	if !strings.HasPrefix(filepath.Base(dir), "run_") || filepath.Dir(dir) != out {
		t.Errorf("run directory %s", dir)
	}
	want := []string{"metrics.csv", "summary.json", "report.md", "loadgen.log", "server.log", "loadgen_report.json",
		"migration_timing_1.txt", "migration_timing_1.json", "migration_timing_2.txt", "migration_timing_2.json"}
	for _, n := range plot.Names() {
		for _, f := range plot.Formats {
			want = append(want, n+"."+f)
		}
	}
	for _, f := range want {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s missing or empty: %v", f, err)
		}
	}
	checkMagic(t, dir)

	tab, err := results.ReadCSV(filepath.Join(dir, results.MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(tab.Header[:19], ",") != strings.Join(results.SeedColumns, ",") || len(tab.Header) != len(results.Columns()) {
		t.Errorf("CSV header %v", tab.Header)
	}
	if tab.Len() < 7 {
		t.Errorf("only %d CSV rows for a run of at least 9 s", tab.Len())
	}
	ev := 0
	for _, v := range tab.Float("migration_event") {
		if v == 1 {
			ev++
		}
	}
	if ev != 2 {
		t.Errorf("%d rows flag a migration event, want 2", ev)
	}
	timings, err := results.LoadTimings(dir)
	if err != nil || len(timings) != 2 || timings[0].TargetNode != "hostB" || timings[1].TargetNode != "hostA" {
		t.Fatalf("timings %+v %v", timings, err)
	}

	s, err := results.ReadSummary(filepath.Join(dir, results.SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	if s.Migrations != 2 || s.Failed != 0 || s.ConnectionDrops != 0 || s.FramesLost != 0 || s.FramesDuplicated != 0 || s.ConnectionsUp != 4 {
		t.Fatalf("migrations %d, failed %d, drops %d, frames lost %d, duplicated %d, connections up %d",
			s.Migrations, s.Failed, s.ConnectionDrops, s.FramesLost, s.FramesDuplicated, s.ConnectionsUp)
	}
	if s.FramesReceived < 4*30*9 || s.DowntimeMs.N != 2 || s.TimeToReadyMs.N != 2 || s.PhaseMs["checkpoint"].Mean <= 0 {
		t.Fatalf("nothing measured: %+v", s)
	}
	report, _ := os.ReadFile(filepath.Join(dir, "report.md"))
	for _, w := range []string{"| checkpoint |", "client-visible downtime", "![ws_rtt](ws_rtt.png)", "frames lost"} {
		if !bytes.Contains(report, []byte(w)) {
			t.Errorf("report.md lacks %q", w)
		}
	}
}

func checkMagic(t *testing.T, dir string) {
	t.Helper()
	for _, n := range plot.Names() {
		for f, magic := range map[string]string{"png": "\x89PNG\r\n\x1a\n", "pdf": "%PDF-", "svg": "<?xml"} {
			b, err := os.ReadFile(filepath.Join(dir, n+"."+f))
			if err != nil {
				continue // reported above
			}
			if !bytes.HasPrefix(b, []byte(magic)) || (f == "svg" && !bytes.Contains(b, []byte("<svg"))) {
				t.Errorf("%s.%s is not a valid %s file", n, f, f)
			}
		}
	}
}
