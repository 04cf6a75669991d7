package migratebench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/containerflow/containerflow/internal/metrics"
	"github.com/containerflow/containerflow/internal/migration"
)

// PerMigration is one migration of the result.
type PerMigration struct {
	N           int              `json:"n"`
	Container   string           `json:"container"`
	Engine      string           `json:"engine"`
	MemoryMiB   int              `json:"memory_mib"`
	From        string           `json:"from"`
	To          string           `json:"to"`
	Status      string           `json:"status"`
	Error       string           `json:"error,omitempty"`
	Handoff     bool             `json:"handoff"`
	Priority    bool             `json:"priority"`
	TLS         bool             `json:"tls"`
	DowntimeMs  float64          `json:"downtime_ms"`
	EchoGapMs   float64          `json:"echo_gap_ms"`
	StreamGapMs float64          `json:"stream_gap_ms"`
	Record      migration.Record `json:"record"`
}

// Row is one container of the run: an engine, a memory size, a mode.
type Row struct {
	Engine    string `json:"engine"`
	MemoryMiB int    `json:"memory_mib"`
	Mode      string `json:"mode"`
	Image     bool   `json:"image"`    // runs from an image, not the host's root
	Workload  string `json:"workload"` // stream or quic
	// QUIC workload: requests (and download chunks) lost or answered
	// twice at the application level, connections that needed a new
	// handshake, and quic-go's own loss and PTO counts in the migrations'
	// windows; datagrams are unreliable by design, their loss is shown,
	// not a failure.
	RequestsSent       uint64   `json:"requests_sent,omitempty"`
	RequestsLost       uint64   `json:"requests_lost,omitempty"`
	RequestsDuplicated uint64   `json:"requests_duplicated,omitempty"`
	NewHandshakes      int      `json:"new_handshakes,omitempty"`
	DatagramsLost      uint64   `json:"datagrams_lost,omitempty"`
	QUICLostPackets    int      `json:"quic_lost_packets,omitempty"`
	QUICPTOs           int      `json:"quic_ptos,omitempty"`
	MemoryVerified     bool     `json:"memory_verified"` // every page checked after the last migration
	Migrations         int      `json:"migrations"`
	Failed             int      `json:"failed"`
	ConnectionDrops    int      `json:"connection_drops"`
	DropErrors         []string `json:"drop_errors,omitempty"`
	BytesLost          uint64   `json:"bytes_lost"`
	BytesDuplicated    uint64   `json:"bytes_duplicated"`
	RecordsReorder     uint64   `json:"records_reordered"`
	BytesSent          uint64   `json:"bytes_sent"`
	// DowntimeMs is the longest silence on any connection in either
	// direction around each migration; EchoGapMs only counts the echoes
	// of the client's records (which wait for the client's
	// retransmission), StreamGapMs only the server's own stream.
	DowntimeMs    metrics.Dist `json:"downtime_ms"`
	EchoGapMs     metrics.Dist `json:"echo_gap_ms"`
	StreamGapMs   metrics.Dist `json:"stream_gap_ms"`
	TimeToReadyMs metrics.Dist `json:"time_to_ready_ms"`
	TotalMs       metrics.Dist `json:"total_ms"`
	// ReferenceMs is the bare CRIU dump + restore of the round's
	// direct-engine container (same workload and memory) on its own host
	// (no transfer, no network steps, CRIU started for each), and
	// ReferenceDowntimeMs what its clients saw meanwhile.
	ReferenceMs         metrics.Dist `json:"reference_ms"`
	ReferenceDowntimeMs metrics.Dist `json:"reference_downtime_ms"`
	// ReadyOverReference is time to ready p50 / reference p50.
	ReadyOverReference float64 `json:"ready_over_reference,omitempty"`
	// With CompareHandoff: the downtime with and without the handoff.
	DowntimeHandoffMs   *metrics.Dist `json:"downtime_with_handoff_ms,omitempty"`
	DowntimeNoHandoffMs *metrics.Dist `json:"downtime_without_handoff_ms,omitempty"`
	// With ComparePriority: the downtime with and without raised CPU
	// priority for CRIU.
	DowntimePriorityMs   *metrics.Dist `json:"downtime_with_priority_ms,omitempty"`
	DowntimeNoPriorityMs *metrics.Dist `json:"downtime_without_priority_ms,omitempty"`
	// With CompareTLS: downtime and image stream throughput (MB/s: the
	// stream's wire bytes over the whole stream) over mutual TLS and
	// over plain HTTP.
	DowntimeTLSMs       *metrics.Dist               `json:"downtime_tls_ms,omitempty"`
	DowntimePlainMs     *metrics.Dist               `json:"downtime_plain_ms,omitempty"`
	ThroughputTLSMBps   *metrics.Dist               `json:"transfer_mbps_tls,omitempty"`
	ThroughputPlainMBps *metrics.Dist               `json:"transfer_mbps_plain,omitempty"`
	PhaseMs             map[string]metrics.MeanSDOf `json:"phase_ms"`
	CheckpointBytes     metrics.Dist                `json:"checkpoint_size_bytes"`
	// ImageStageMs: each migration that had to send the image first (to a
	// host without it), the time that took, outside the downtime.
	ImageStageMs    []float64      `json:"image_stage_ms,omitempty"`
	ImageStageBytes int64          `json:"image_stage_bytes,omitempty"`
	PerMigration    []PerMigration `json:"per_migration"`
}

func (row *Row) setDists(down, echo, srv, ready, total, refs, refDown, ckpt []float64, phases map[string][]float64) {
	row.DowntimeMs = metrics.Summarize(down)
	row.EchoGapMs = metrics.Summarize(echo)
	row.StreamGapMs = metrics.Summarize(srv)
	row.TimeToReadyMs = metrics.Summarize(ready)
	row.TotalMs = metrics.Summarize(total)
	row.ReferenceMs = metrics.Summarize(refs)
	row.ReferenceDowntimeMs = metrics.Summarize(refDown)
	row.CheckpointBytes = metrics.Summarize(ckpt)
	row.PhaseMs = map[string]metrics.MeanSDOf{}
	for k, v := range phases {
		row.PhaseMs[k] = metrics.MeanSDSummary(v)
	}
}

func (row *Row) setReadyOverReference() {
	if row.ReferenceMs.P50 > 0 && row.TimeToReadyMs.N > 0 {
		row.ReadyOverReference = row.TimeToReadyMs.P50 / row.ReferenceMs.P50
	}
}

// pair summarizes the two halves of an A/B comparison.
func over(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// throughput is a migration's image stream rate in MB/s: its bytes on
// the wire over the whole stream, from the request to the last byte.
// (Over the transfer phase alone — what the dump did not hide — it would
// grow without bound as the stream overlaps the dump more.)
func throughput(rec migration.Record) float64 {
	b := rec.TransferWireB
	if b == 0 {
		b = rec.CheckpointB
	}
	if rec.StreamMs <= 0 {
		return 0
	}
	return float64(b) / 1e6 / (rec.StreamMs / 1000)
}

func pair(with, without []float64) (*metrics.Dist, *metrics.Dist) {
	a, b := metrics.Summarize(with), metrics.Summarize(without)
	return &a, &b
}

// Ratio is one engine's downtime over another's at the same memory size.
type Ratio struct {
	MemoryMiB int     `json:"memory_mib"`
	P50       float64 `json:"p50"`
	P99       float64 `json:"p99"`
}

// Result is what the benchmark prints and writes.
type Result struct {
	// Totals over every row.
	Migrations      int      `json:"migrations"`
	Failed          int      `json:"failed"`
	Connections     int      `json:"connections_per_container"`
	ConnectionDrops int      `json:"connection_drops"`
	DropErrors      []string `json:"drop_errors,omitempty"`
	BytesLost       uint64   `json:"bytes_lost"`
	BytesDuplicated uint64   `json:"bytes_duplicated"`
	BytesSent       uint64   `json:"bytes_sent"`
	// MemoryUnverified counts rows whose workload memory could not be
	// verified after the migrations (must be 0).
	MemoryUnverified int   `json:"memory_unverified"`
	Rows             []Row `json:"rows"`
	// DirectOverRunc is the direct engine's downtime over runc's, per
	// memory size, when both ran (--compare).
	DirectOverRunc []Ratio `json:"direct_over_runc_downtime,omitempty"`
	// ImageOverHostRoot is an image container's downtime over the host-root
	// container's of the same round (--image).
	ImageOverHostRoot []Ratio `json:"image_over_host_root_downtime,omitempty"`
	// QUICOverStream is the QUIC workload's interruption over the TCP
	// stream's downtime in the same round (--workload stream,quic).
	QUICOverStream     []Ratio `json:"quic_over_stream_downtime,omitempty"`
	RequestsLost       uint64  `json:"requests_lost"`
	RequestsDuplicated uint64  `json:"requests_duplicated"`
	NewHandshakes      int     `json:"new_handshakes"`
	Options            struct {
		Interval string `json:"interval"`
		Settle   string `json:"settle"`
	} `json:"options"`
}

func (r *Result) add(rows []Row) {
	for _, row := range rows {
		r.Rows = append(r.Rows, row)
		r.Migrations += row.Migrations
		r.Failed += row.Failed
		r.ConnectionDrops += row.ConnectionDrops
		r.DropErrors = append(r.DropErrors, row.DropErrors...)
		if row.MemoryMiB > 0 && !row.MemoryVerified {
			r.MemoryUnverified++
		}
		r.BytesLost += row.BytesLost
		r.BytesDuplicated += row.BytesDuplicated
		r.BytesSent += row.BytesSent
		r.RequestsLost += row.RequestsLost
		r.RequestsDuplicated += row.RequestsDuplicated
		r.NewHandshakes += row.NewHandshakes
	}
}

func (r *Result) summarize() {
	for _, d := range r.Rows {
		if d.Image {
			for _, h := range r.Rows {
				if !h.Image && h.Engine == d.Engine && h.Workload == d.Workload && h.MemoryMiB == d.MemoryMiB && h.Mode == d.Mode && h.DowntimeMs.P50 > 0 && h.DowntimeMs.P99 > 0 {
					r.ImageOverHostRoot = append(r.ImageOverHostRoot, Ratio{MemoryMiB: d.MemoryMiB,
						P50: d.DowntimeMs.P50 / h.DowntimeMs.P50, P99: d.DowntimeMs.P99 / h.DowntimeMs.P99})
				}
			}
		}
		if d.Workload == workloadQUIC {
			for _, h := range r.Rows {
				if h.Workload == workloadStream && h.Engine == d.Engine && h.Image == d.Image && h.MemoryMiB == d.MemoryMiB && h.Mode == d.Mode && h.DowntimeMs.P50 > 0 && h.DowntimeMs.P99 > 0 {
					r.QUICOverStream = append(r.QUICOverStream, Ratio{MemoryMiB: d.MemoryMiB,
						P50: d.DowntimeMs.P50 / h.DowntimeMs.P50, P99: d.DowntimeMs.P99 / h.DowntimeMs.P99})
				}
			}
		}
		if d.Engine != "direct" || d.Image || d.Workload == workloadQUIC {
			continue
		}
		for _, c := range r.Rows {
			if c.Engine == "runc" && !c.Image && c.Workload != workloadQUIC && c.MemoryMiB == d.MemoryMiB && c.DowntimeMs.P50 > 0 && c.DowntimeMs.P99 > 0 {
				r.DirectOverRunc = append(r.DirectOverRunc, Ratio{MemoryMiB: d.MemoryMiB,
					P50: d.DowntimeMs.P50 / c.DowntimeMs.P50, P99: d.DowntimeMs.P99 / c.DowntimeMs.P99})
			}
		}
	}
}

// Print writes the human-readable summary.
func (r *Result) Print(w io.Writer) {
	fmt.Fprintf(w, "\nmigrations %d, failed %d, connections %d per container, connection drops %d, bytes lost %d, duplicated %d (of %d sent), memory rounds unverified %d\n",
		r.Migrations, r.Failed, r.Connections, r.ConnectionDrops, r.BytesLost, r.BytesDuplicated, r.BytesSent, r.MemoryUnverified)
	fmt.Fprintf(w, "\n%-10s %7s %-13s %3s | %-23s | %-15s | %8s | %-15s | %9s\n", "engine", "mem MiB", "mode", "n",
		"downtime p50  p99  max", "ready p50  p99", "total", "bare CRIU p50", "ready/bare")
	for _, row := range r.Rows {
		fmt.Fprintf(w, "%-10s %7d %-13s %3d | %7.1f %7.1f %7.1f | %7.1f %7.1f | %8.1f | %7.1f (n=%d) | %9s\n",
			row.label(), row.MemoryMiB, row.Mode, row.Migrations-row.Failed,
			row.DowntimeMs.P50, row.DowntimeMs.P99, row.DowntimeMs.Max,
			row.TimeToReadyMs.P50, row.TimeToReadyMs.P99, row.TotalMs.P50,
			row.ReferenceMs.P50, row.ReferenceMs.N, ratio(row.ReadyOverReference))
	}
	for _, x := range r.DirectOverRunc {
		fmt.Fprintf(w, "direct/runc downtime at %d MiB: p50 %.2f, p99 %.2f\n", x.MemoryMiB, x.P50, x.P99)
	}
	if r.RequestsLost+r.RequestsDuplicated > 0 || r.NewHandshakes > 0 || len(r.QUICOverStream) > 0 {
		fmt.Fprintf(w, "QUIC: requests lost %d, duplicated %d, new handshakes %d\n", r.RequestsLost, r.RequestsDuplicated, r.NewHandshakes)
	}
	for _, x := range r.QUICOverStream {
		fmt.Fprintf(w, "quic/stream interruption at %d MiB: p50 %.2f, p99 %.2f\n", x.MemoryMiB, x.P50, x.P99)
	}
	for _, row := range r.Rows {
		if row.Workload == workloadQUIC {
			fmt.Fprintf(w, "%s: %d requests, %d lost, %d duplicated; %d datagrams lost; quic-go declared %d packets lost and %d PTOs in the migrations' windows\n",
				row.label(), row.RequestsSent, row.RequestsLost, row.RequestsDuplicated, row.DatagramsLost, row.QUICLostPackets, row.QUICPTOs)
		}
	}
	for _, x := range r.ImageOverHostRoot {
		fmt.Fprintf(w, "image/host-root downtime at %d MiB: p50 %.2f, p99 %.2f\n", x.MemoryMiB, x.P50, x.P99)
	}
	for _, row := range r.Rows {
		for _, ms := range row.ImageStageMs {
			fmt.Fprintf(w, "%s: image sent to a host without it in %.0f ms (%.1f MB), before the freeze\n", row.label(), ms, float64(row.ImageStageBytes)/1e6)
		}
	}
	for _, row := range r.Rows {
		if row.DowntimeHandoffMs != nil {
			fmt.Fprintf(w, "%s %d MiB downtime p50/p99: handoff on %.1f/%.1f (n=%d), off %.1f/%.1f (n=%d)\n", row.Engine, row.MemoryMiB,
				row.DowntimeHandoffMs.P50, row.DowntimeHandoffMs.P99, row.DowntimeHandoffMs.N,
				row.DowntimeNoHandoffMs.P50, row.DowntimeNoHandoffMs.P99, row.DowntimeNoHandoffMs.N)
		}
	}
	for _, row := range r.Rows {
		if row.DowntimePriorityMs != nil {
			fmt.Fprintf(w, "%s %d MiB downtime p50/p99: CRIU priority raised %.1f/%.1f (n=%d), ordinary %.1f/%.1f (n=%d)\n", row.Engine, row.MemoryMiB,
				row.DowntimePriorityMs.P50, row.DowntimePriorityMs.P99, row.DowntimePriorityMs.N,
				row.DowntimeNoPriorityMs.P50, row.DowntimeNoPriorityMs.P99, row.DowntimeNoPriorityMs.N)
		}
	}
	for _, row := range r.Rows {
		if row.DowntimeTLSMs != nil {
			t, p := row.DowntimeTLSMs, row.DowntimePlainMs
			fmt.Fprintf(w, "%s %d MiB downtime p50/p99: TLS %.1f/%.1f (n=%d), plain %.1f/%.1f (n=%d), TLS/plain p50 %.3f\n", row.Engine, row.MemoryMiB,
				t.P50, t.P99, t.N, p.P50, p.P99, p.N, over(t.P50, p.P50))
			t, p = row.ThroughputTLSMBps, row.ThroughputPlainMBps
			fmt.Fprintf(w, "%s %d MiB image stream MB/s p50 (mean): TLS %.1f (%.1f), plain %.1f (%.1f), TLS/plain p50 %.3f\n", row.Engine, row.MemoryMiB,
				t.P50, t.Mean, p.P50, p.Mean, over(t.P50, p.P50))
		}
	}
	phases := []string{"prepare", "freeze", "checkpoint", "transfer", "restore", "switch", "resume", "total"}
	fmt.Fprintf(w, "\nphase means (ms)\n%-10s %7s", "engine", "mem MiB")
	for _, k := range phases {
		fmt.Fprintf(w, " %10s", k)
	}
	fmt.Fprintf(w, " %12s\n", "images MB")
	for _, row := range r.Rows {
		fmt.Fprintf(w, "%-10s %7d", row.label(), row.MemoryMiB)
		for _, k := range phases {
			fmt.Fprintf(w, " %10.1f", row.PhaseMs[k].Mean)
		}
		fmt.Fprintf(w, " %12.1f\n", row.CheckpointBytes.Mean/1e6)
	}
}

// label names a row's engine, "+img" when it runs from an image.
func (row Row) label() string {
	l := row.Engine
	if row.Image {
		l += "+img"
	}
	if row.Workload == workloadQUIC {
		l += "+quic"
	}
	return l
}

func ratio(x float64) string {
	if x == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", x)
}

// WriteJSON writes the result to path.
func (r *Result) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
