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

	"github.com/containerflow/containerflow/internal/experiment"
	"github.com/containerflow/containerflow/internal/nsrun"
	"github.com/containerflow/containerflow/internal/plot"
	"github.com/containerflow/containerflow/internal/results"
)

// A short QUIC experiment on the testbed (clean and loss-1%, two
// migrations each, two connections): every output is there, and no
// connection, handshake or request was lost.
func TestShortQUICExperiment(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for the testbed, runc and CRIU (CI runs as root)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	conds, err := experiment.ParseConditions("clean,loss-1%")
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	prefix := "qx" + hex.EncodeToString(b)
	out := t.TempDir()
	res, err := experiment.RunQUIC(context.Background(), experiment.QUICOptions{
		Conditions: conds, SteadyState: 2 * time.Second, PostMigration: 2 * time.Second, Migrations: 2, Connections: 2,
		MemoryMiB: 4, OutDir: out, Binary: self, Prefix: prefix, Progress: testWriter{t},
	})
	if left, _ := nsrun.List(prefix + "-"); len(left) > 0 {
		t.Errorf("testbed not torn down: %v", left)
	}
	if err != nil {
		t.Fatal(err)
	}
	dir := res.Dir
	want := []string{"summary.json", "report.md", "server.log", "agent_hostA.log", "agent_hostB.log"}
	for _, c := range []string{"clean", "loss-1pct"} {
		want = append(want, filepath.Join(c, experiment.ResponsesFile), filepath.Join(c, experiment.PerSecondFile), filepath.Join(c, experiment.ConnectionsFile))
		for n := 1; n <= 2; n++ {
			base := filepath.Base(results.TimingBase("", n))
			want = append(want, filepath.Join(c, base+".txt"), filepath.Join(c, base+".json"))
		}
	}
	for _, n := range plot.QUICNames() {
		for _, f := range plot.Formats {
			want = append(want, n+"."+f)
		}
	}
	for _, f := range want {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s missing or empty: %v", f, err)
		}
	}
	png, _ := os.ReadFile(filepath.Join(dir, "quic_response_time.png"))
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Error("quic_response_time.png is not a PNG")
	}
	if !experiment.IsQUICRun(dir) {
		t.Error("the run directory is not recognised as a QUIC run")
	}

	s, err := experiment.ReadQUICSummary(filepath.Join(dir, results.SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Conditions) != 2 || s.Error != "" {
		t.Fatalf("%d conditions, error %q", len(s.Conditions), s.Error)
	}
	if s.MemoryVerified == nil || !*s.MemoryVerified {
		t.Errorf("memory verified: %v", s.MemoryVerified)
	}
	for _, c := range s.Conditions {
		t.Logf("%s: %d/%d survived, %d handshakes, requests %d sent %d lost %d duplicated; response p50 %.2f p99 %.2f ms; interruption %+v; QUIC lost %d PTOs %d in windows",
			c.Name, c.Survived, c.Connections, c.Handshakes, c.RequestsSent, c.RequestsLost, c.RequestsDuplicated, c.RespP50Ms, c.RespP99Ms,
			c.InterruptionMs, c.QUICLostInWindows, c.PTOsInWindows)
		if c.Connections != 2 || c.Survived != 2 || c.Lost != 0 || c.NewHandshakes != 0 || c.Handshakes != 2 {
			t.Errorf("%s: connections %d, survived %d, lost %d, handshakes %d", c.Name, c.Connections, c.Survived, c.Lost, c.Handshakes)
		}
		if c.RequestsLost != 0 || c.RequestsDuplicated != 0 || c.RequestsSent < 2*100*5 || c.Clean != 2 {
			t.Errorf("%s: requests %d sent, %d lost, %d duplicated; %d clean connections: %v", c.Name, c.RequestsSent, c.RequestsLost, c.RequestsDuplicated, c.Clean, c.Problems)
		}
		if c.Migrations != 2 || c.Succeeded != 2 || c.InterruptionMs.N != 2 || c.TransferMs.N != 2 || c.CheckpointBytes.Min < 4<<20 {
			t.Errorf("%s: migrations %d, succeeded %d, interruptions %d, transfers %d, image min %.0f bytes",
				c.Name, c.Migrations, c.Succeeded, c.InterruptionMs.N, c.TransferMs.N, c.CheckpointBytes.Min)
		}
		if c.InterruptionMs.Max <= 0 {
			t.Errorf("%s: no silence at any migration: the windows are wrong", c.Name)
		}
	}
	if s.Conditions[1].Impairments["client-data"] == "" {
		t.Errorf("loss-1%% did not impair the client's link: %v", s.Conditions[1].Impairments)
	}
	report, _ := os.ReadFile(filepath.Join(dir, "report.md"))
	for _, w := range []string{"0 connections lost, 0 new handshakes, 0 requests lost", "![quic_interruption_cdf](quic_interruption_cdf.png)", "| loss-1% |"} {
		if !bytes.Contains(report, []byte(w)) {
			t.Errorf("report.md lacks %q", w)
		}
	}
	// `cflow plot` on the run redraws the same plots.
	names, err := experiment.PlotQUIC(dir)
	if err != nil || strings.Join(names, ",") != strings.Join(plot.QUICNames(), ",") {
		t.Errorf("redraw: %v %v", names, err)
	}
}
