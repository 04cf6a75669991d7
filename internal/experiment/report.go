package experiment

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/containerflow/containerflow/internal/metrics"
	"github.com/containerflow/containerflow/internal/plot"
	"github.com/containerflow/containerflow/internal/results"
)

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// writeReport writes report.md: the run's story in tables, with the
// plots embedded.
func writeReport(path string, s *results.Summary, plots []string) error {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("# Experiment %s\n\n", s.Run)
	p("%d migrations alternating hostA and hostB, %d WebSocket connections at %d frames/s each, %.0f s steady state, %.0f s after each migration",
		s.Params.Migrations, s.Params.Connections, s.Params.FPS, s.Params.SteadyStateS, s.Params.PostMigrationS)
	if s.Params.Quiesce {
		p(", quiesced (SIGUSR2) before each checkpoint")
	}
	for _, l := range slices.Sorted(maps.Keys(s.Params.Impairments)) {
		p("; link %s impaired, each way: %s", l, s.Params.Impairments[l])
	}
	p(". Started %s, finished %s.\n\n", s.Started.Format("2006-01-02 15:04:05 MST"), s.Finished.Format("15:04:05"))
	if s.Interrupted || s.Error != "" {
		p("> **The run did not complete cleanly:** %s\n\n", s.Error)
	}

	p("## Outcome\n\n")
	p("| | |\n|---|---|\n")
	p("| migrations attempted / succeeded / failed | %d / %d / %d |\n", s.Migrations, s.Succeeded, s.Failed)
	p("| connection drops (reconnects) | %d (%d) |\n", s.ConnectionDrops, s.Reconnects)
	p("| connections up at the end | %d of %d |\n", s.ConnectionsUp, s.Params.Connections)
	p("| data frames received | %d |\n", s.FramesReceived)
	p("| frames lost / duplicated / out of order | %d / %d / %d |\n", s.FramesLost, s.FramesDuplicated, s.FramesReordered)
	p("| pings sent / echoes received | %d / %d |\n", s.PingsSent, s.EchoesReceived)
	p("| longest gap between two frames on any connection | %.0f ms |\n", s.MaxFrameGapMs)
	if s.RTTp50Ms.N > 0 {
		p("| RTT, median of the per-second medians | %.3f ms |\n", s.RTTp50Ms.P50)
	}
	p("\n")

	p("## Downtime\n\n")
	p("*Client-visible* is the longest gap between two data frames on any connection around each migration, measured by the load generator; ")
	p("*time to ready* is the agents' freeze-to-ready time (the seed's downtime). Successful migrations only.\n\n")
	p("| ms | n | p50 | p95 | p99 | mean | max |\n|---|---|---|---|---|---|---|\n")
	for _, x := range []struct {
		name string
		d    metrics.Dist
	}{{"client-visible downtime", s.DowntimeMs}, {"time to ready", s.TimeToReadyMs}} {
		d := x.d
		p("| %s | %d | %.1f | %.1f | %.1f | %.1f | %.1f |\n", x.name, d.N, d.P50, d.P95, d.P99, d.Mean, d.Max)
	}
	p("\nCDF of the client-visible downtime (each migration's value, sorted):\n\n")
	var down []float64
	for _, pm := range s.PerMigration {
		if pm.Status == "success" && pm.DowntimeMs.Valid() {
			down = append(down, float64(pm.DowntimeMs))
		}
	}
	sort.Float64s(down)
	if len(down) == 0 {
		p("(no successful migration)\n\n")
	} else {
		p("| downtime ≤ (ms) | fraction of migrations |\n|---|---|\n")
		for i, v := range down {
			p("| %.1f | %.0f%% |\n", v, 100*float64(i+1)/float64(len(down)))
		}
		p("\n")
	}

	p("## Migration phases\n\n")
	p("| phase | mean (ms) | sd (ms) |\n|---|---|---|\n")
	for _, k := range results.Phases {
		ph := s.PhaseMs[k]
		p("| %s | %.1f | %.1f |\n", k, ph.Mean, ph.SD)
	}
	if s.CheckpointBytes.N > 0 {
		p("\nCheckpoint images: mean %.1f MB (max %.1f MB).\n", s.CheckpointBytes.Mean/1e6, s.CheckpointBytes.Max/1e6)
	}

	p("\n## Each migration\n\n")
	p("| # | from → to | status | checkpoint | transfer | restore | switch | time to ready | client-visible | error |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, pm := range s.PerMigration {
		dt := "—"
		if pm.DowntimeMs.Valid() {
			dt = fmt.Sprintf("%.0f ms", float64(pm.DowntimeMs))
		}
		p("| %d | %s → %s | %s | %.0f ms | %.0f ms | %.0f ms | %.1f ms | %.0f ms | %s | %s |\n", pm.N, pm.From, pm.To, pm.Status,
			pm.CheckpointMs, pm.TransferMs, pm.RestoreMs, pm.SwitchMs, pm.TimeToReadyMs, dt, strings.ReplaceAll(pm.Error, "|", "/"))
	}

	if len(plots) > 0 {
		p("\n## Plots\n\nEach plot is also in the run directory as SVG and PDF. Shaded spans mark migrations (request to answer).\n\n")
		for _, name := range plots {
			p("### %s\n\n%s\n\n![%s](%s.png)\n\n", plot.Title(name), plot.Caption(name), name, name)
		}
	}
	p("## Files\n\n")
	p("- `metrics.csv`: one row per second; the first 19 columns are the seed's (see docs/experiment.md)\n")
	p("- `migration_timing_N.txt` / `.json`: each migration's phases in the seed's key=value format\n")
	p("- `summary.json`: the numbers above; `loadgen_report.json`: every connection's counters and frame gaps\n")
	p("- `server.log`, `loadgen.log`, `agent_hostA.log`, `agent_hostB.log`: logs\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
