package experiment

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/containerflow/containerflow/internal/plot"
)

// writeQUICReport writes a QUIC run's report.md: what ran, a table per
// condition, the plots and a short reading of the numbers.
func writeQUICReport(path string, s *QUICSummary, plots []string) error {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	pr := s.Params
	p("# QUIC server-migration experiment %s\n\n", s.Run)
	p("A quic-go server in a container at %s (holding %d MiB of self-checking memory) serves %d QUIC connections from the client node, ",
		ContainerIP, pr.MemoryMiB, pr.Connections)
	p("each issuing a request on a new stream every %.0f ms and receiving a download chunk every %.0f ms. ", pr.IntervalMs, pr.IntervalMs)
	p("The conditions ran one after the other on one testbed, each with fresh connections: %.0f s of traffic, then (if it migrates) %d migrations alternating hostA and hostB, %s, %.0f s apart. ",
		pr.SteadyStateS, pr.Migrations, pr.Mode, pr.PostMigrationS)
	p("The client keeps the server's address throughout (the switch steers it); its QUIC stack is unmodified.")
	if pr.Delay != "" {
		p(" The client's link had a one-way delay of %s (jitter %s) in every condition.", pr.Delay, pr.Jitter)
	}
	p(" Started %s, finished %s.\n\n", s.Started.Format("2006-01-02 15:04:05 MST"), s.Finished.Format("15:04:05"))
	if s.Interrupted || s.Error != "" {
		p("> **The run did not complete cleanly:** %s\n\n", s.Error)
	}

	p("## Conditions\n\n| condition | what | impairments (each way) |\n|---|---|---|\n")
	for _, c := range s.Conditions {
		var im []string
		for _, l := range slices.Sorted(maps.Keys(c.Impairments)) {
			im = append(im, l+": "+c.Impairments[l])
		}
		if len(im) == 0 {
			im = []string{"none"}
		}
		p("| %s | %s | %s |\n", c.Name, c.Description, strings.Join(im, "; "))
	}

	p("\n## Outcome per condition\n\n")
	p("*Interruption* is, per migration, the longest silence (no response and no download chunk) on any connection that ended in the migration's window — from its request to the next migration or the end of the condition; silences under %.0f ms are not kept, so 0 means shorter than that. ", pr.MinGapMs)
	p("*Requests lost* were never answered, although the clients waited 5 s for the outstanding ones at the end. QUIC lost packets and PTOs are the client's quic-go's own counts (qlog events) in the migration windows.\n\n")
	cols := []string{"connections", "survived (lost)", "handshakes (new)", "requests sent", "answered", "lost", "duplicated", "response p50 / p99 / max (ms)",
		"longest silence, whole condition (ms)", "migrations ok / failed", "interruption p50 / p99 / max (ms)", "time to ready p50 (ms)",
		"QUIC lost packets / PTOs in windows", "image (MB)", "wire (MB)", "transfer mean (ms)", "compression"}
	p("| | %s |\n|---|%s\n", strings.Join(names(s), " | "), strings.Repeat("---|", len(s.Conditions)))
	for _, col := range cols {
		p("| %s |", col)
		for _, c := range s.Conditions {
			p(" %s |", cell(col, &c))
		}
		p("\n")
	}
	for _, c := range s.Conditions {
		if c.Error != "" {
			p("\n**%s:** %s\n", c.Name, strings.ReplaceAll(c.Error, "\n", "; "))
		}
		for _, pb := range c.Problems {
			p("\n- %s: %s", c.Name, pb)
		}
	}
	if s.MemoryVerified != nil {
		p("\nThe server's %d MiB of memory was checked page by page after the last migration: intact = %v.\n", pr.MemoryMiB, *s.MemoryVerified)
	}

	p("\n## Reading\n\n")
	for _, l := range reading(s) {
		p("- %s\n", l)
	}

	for _, c := range s.Conditions {
		if len(c.PerMigration) == 0 {
			continue
		}
		p("\n### Migrations of %s\n\n", c.Name)
		p("| # | from → to | status | time to ready | checkpoint | transfer | restore | image | wire | interruption | responses / chunks silent | QUIC lost | PTOs | error |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, m := range c.PerMigration {
			p("| %d | %s → %s | %s | %.0f ms | %.0f ms | %.0f ms | %.0f ms | %.1f MB | %.1f MB | %.0f ms | %.0f / %.0f ms | %d | %d | %s |\n",
				m.N, m.From, m.To, m.Status, m.TimeToReadyMs, m.CheckpointMs, m.TransferMs, m.RestoreMs, float64(m.CheckpointBytes)/1e6,
				float64(m.TransferWireBytes)/1e6, m.InterruptionMs, m.ResponseGapMs, m.ChunkGapMs, m.QUICLost, m.PTOs, strings.ReplaceAll(m.Error, "|", "/"))
		}
	}

	if len(plots) > 0 {
		p("\n## Plots\n\nEach plot is also in the run directory as SVG and PDF.\n\n")
		for _, name := range plots {
			p("### %s\n\n%s\n\n![%s](%s.png)\n\n", plot.QUICTitle(name), plot.QUICCaption(name), name, name)
		}
	}
	p("## Files\n\n")
	p("- `summary.json`: everything above, per condition and per migration\n")
	p("- `CONDITION/responses.csv`: every answered request (when it was sent, connection, request number, response time); `CONDITION/per_second.csv`: p50/p99/max per second of sending\n")
	p("- `CONDITION/migration_timing_N.txt` / `.json`: each migration's record (phases, image and wire bytes, compression)\n")
	p("- `CONDITION/connections.json`: the client's final per-connection stats (gaps, QUIC loss and PTO times)\n")
	p("- `server.log`, `agent_hostA.log`, `agent_hostB.log`: logs\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func names(s *QUICSummary) []string {
	var out []string
	for _, c := range s.Conditions {
		out = append(out, c.Name)
	}
	return out
}

func cell(col string, c *ConditionSummary) string {
	mig := c.Migrate && c.Migrations > 0
	dash := "—"
	switch col {
	case "connections":
		return fmt.Sprint(c.Connections)
	case "survived (lost)":
		return fmt.Sprintf("%d (%d)", c.Survived, c.Lost)
	case "handshakes (new)":
		return fmt.Sprintf("%d (%d)", c.Handshakes, c.NewHandshakes)
	case "requests sent":
		return fmt.Sprint(c.RequestsSent)
	case "answered":
		return fmt.Sprint(c.RequestsAnswered)
	case "lost":
		return fmt.Sprint(c.RequestsLost)
	case "duplicated":
		return fmt.Sprint(c.RequestsDuplicated)
	case "response p50 / p99 / max (ms)":
		return fmt.Sprintf("%.2f / %.2f / %.0f", c.RespP50Ms, c.RespP99Ms, c.RespMaxMs)
	case "longest silence, whole condition (ms)":
		return fmt.Sprintf("%.0f", c.MaxSilenceMs)
	case "migrations ok / failed":
		if !mig {
			return dash
		}
		return fmt.Sprintf("%d / %d", c.Succeeded, c.Failed)
	case "interruption p50 / p99 / max (ms)":
		if c.InterruptionMs.N == 0 {
			return dash
		}
		return fmt.Sprintf("%.0f / %.0f / %.0f", c.InterruptionMs.P50, c.InterruptionMs.P99, c.InterruptionMs.Max)
	case "time to ready p50 (ms)":
		if c.TimeToReadyMs.N == 0 {
			return dash
		}
		return fmt.Sprintf("%.0f", c.TimeToReadyMs.P50)
	case "QUIC lost packets / PTOs in windows":
		if !mig {
			return fmt.Sprintf("(whole: %d / %d)", c.QUICLost, c.PTOs)
		}
		return fmt.Sprintf("%d / %d", c.QUICLostInWindows, c.PTOsInWindows)
	case "image (MB)":
		if c.CheckpointBytes.N == 0 {
			return dash
		}
		return fmt.Sprintf("%.1f", c.CheckpointBytes.Mean/1e6)
	case "wire (MB)":
		if c.TransferWireBytes.N == 0 {
			return dash
		}
		return fmt.Sprintf("%.1f", c.TransferWireBytes.Mean/1e6)
	case "transfer mean (ms)":
		if c.TransferMs.N == 0 {
			return dash
		}
		return fmt.Sprintf("%.0f", c.TransferMs.Mean)
	case "compression":
		if !mig {
			return dash
		}
		return compressName(c.Condition.Compress)
	}
	return ""
}

// reading is the report's short interpretation, computed from the numbers
// so that it cannot claim what the run did not show.
func reading(s *QUICSummary) []string {
	var out []string
	var lostConns, newHS, lostReq, dupReq, migs, failed int
	for _, c := range s.Conditions {
		lostConns += c.Lost
		newHS += int(c.NewHandshakes)
		lostReq += int(c.RequestsLost)
		dupReq += int(c.RequestsDuplicated)
		migs += c.Migrations
		failed += c.Failed
	}
	claim := "holds"
	if lostConns+newHS+lostReq+dupReq > 0 || failed > 0 {
		claim = "does **not** hold"
	}
	out = append(out, fmt.Sprintf("Over all conditions (%d migrations, %d failed): %d connections lost, %d new handshakes, %d requests lost, %d answered twice. The claim — an unmodified QUIC client keeps its connections through server migrations, 0/0/0 — %s in this run.",
		migs, failed, lostConns, newHS, lostReq, dupReq, claim))
	var ref *ConditionSummary
	for i := range s.Conditions {
		if s.Conditions[i].Name == "clean" && s.Conditions[i].InterruptionMs.N > 0 {
			ref = &s.Conditions[i]
		}
	}
	for _, c := range s.Conditions {
		switch {
		case c.Name == "baseline" || !c.Migrate:
			sil := fmt.Sprintf("%.0f ms", c.MaxSilenceMs)
			if c.MaxSilenceMs == 0 {
				sil = fmt.Sprintf("under %.0f ms", s.Params.MinGapMs)
			}
			out = append(out, fmt.Sprintf("%s: without migration the longest silence on any connection was %s and the response time p99 %.2f ms — the floor the others compare with.", c.Name, sil, c.RespP99Ms))
		case c.InterruptionMs.N == 0:
			out = append(out, fmt.Sprintf("%s: no successful migration to measure.", c.Name))
		default:
			line := fmt.Sprintf("%s: interruption p50 %.0f ms, max %.0f ms (time to ready p50 %.0f ms)", c.Name, c.InterruptionMs.P50, c.InterruptionMs.Max, c.TimeToReadyMs.P50)
			if ref != nil && c.Name != ref.Name && ref.InterruptionMs.P50 > 0 {
				line += fmt.Sprintf(", %.1f× the clean path's median", c.InterruptionMs.P50/ref.InterruptionMs.P50)
			}
			if c.Limited {
				line += fmt.Sprintf("; the image (%.1f MB, %.1f MB on the wire, %s) took %.0f ms to cross the limited path", c.CheckpointBytes.Mean/1e6, c.TransferWireBytes.Mean/1e6, compressName(c.Condition.Compress), c.TransferMs.Mean)
			}
			if c.CheckpointBytes.N > 1 && c.CheckpointBytes.Max > 1.3*c.CheckpointBytes.Min {
				line += fmt.Sprintf("; the image grew from %.1f to %.1f MB over the condition's migrations (the requests that arrive during a long freeze are taken in at once after it, and the server's heap grows), so later transfers took longer", c.CheckpointBytes.Min/1e6, c.CheckpointBytes.Max/1e6)
			}
			if c.PTOsInWindows > 0 {
				line += fmt.Sprintf("; %s fired in the windows (the client's probe timeouts while the server was frozen or its answers were lost)", plural(c.PTOsInWindows, "PTO", "PTOs"))
			}
			out = append(out, line+".")
		}
	}
	var unc, zst *ConditionSummary
	for i := range s.Conditions {
		c := &s.Conditions[i]
		if c.Limited && c.TransferMs.N > 0 {
			if c.Condition.Compress == "" {
				unc = c
			} else {
				zst = c
			}
		}
	}
	if unc != nil && zst != nil && zst.TransferMs.Mean > 0 && zst.TransferWireBytes.Mean > 0 {
		out = append(out, fmt.Sprintf("On the limited image path, zstd cut the bytes on the wire %.1f× (%.1f → %.1f MB) and the transfer time %.1f× (%.0f → %.0f ms); the interruption's median went from %.0f to %.0f ms.",
			unc.TransferWireBytes.Mean/zst.TransferWireBytes.Mean, unc.TransferWireBytes.Mean/1e6, zst.TransferWireBytes.Mean/1e6,
			unc.TransferMs.Mean/zst.TransferMs.Mean, unc.TransferMs.Mean, zst.TransferMs.Mean, unc.InterruptionMs.P50, zst.InterruptionMs.P50))
	}
	return out
}
