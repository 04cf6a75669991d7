package results

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"time"

	"github.com/containerflow/containerflow/internal/loadgen"
	"github.com/containerflow/containerflow/internal/metrics"
	"github.com/containerflow/containerflow/internal/workload/ws"
)

// MetricsFile is the CSV's name in a run directory.
const MetricsFile = "metrics.csv"

// SeedColumns are the seed collector's 19 columns, in its order.
var SeedColumns = []string{
	"timestamp", "timestamp_unix_milli", "elapsed_s",
	"connected_clients", "total_clients", "bytes_sent", "bytes_received", "uptime_s",
	"lg_connected_clients",
	"ws_rtt_avg_ms", "ws_rtt_p50_ms", "ws_rtt_p95_ms", "ws_rtt_p99_ms", "ws_rtt_max_ms",
	"ws_jitter_ms", "connection_drops",
	"cpu_percent", "memory_mb",
	"migration_event",
}

// ExtraColumns follow the seed's. Load-generator counters are cumulative;
// lg_frames_per_s, frame_gap_max_ms, rtt_samples, rtt_over_cap and the
// uncapped RTTs cover the row's interval.
var ExtraColumns = []string{
	"migration_active", // 1 while a migration request was in progress during the interval
	"container_host",   // where the container ran at the end of the interval
	"lg_bytes_sent", "lg_bytes_received", "lg_frames_per_s",
	"frames_received", "frames_lost", "frames_duplicated", "frames_reordered",
	"frame_gap_max_ms", "reconnects",
	"rtt_samples", "rtt_over_cap", "ws_rtt_uncapped_p99_ms", "ws_rtt_uncapped_max_ms",
	"pings_sent", "echoes_received",
	"server_frames_sent", "server_pings_stale", "server_quiesced", "rss_mb",
}

// Columns is the whole header.
func Columns() []string { return append(append([]string{}, SeedColumns...), ExtraColumns...) }

// Row is one collection interval. A nil Server or Loadgen means that
// scrape failed; its columns stay empty.
type Row struct {
	Time            time.Time
	Elapsed         time.Duration
	Server          *ws.Metrics
	Loadgen         *loadgen.Metrics
	MigrationEvent  bool // a migration started in this interval (the seed's flag)
	MigrationActive bool
	Host            string
}

func i64(v int64) string  { return strconv.FormatInt(v, 10) }
func u64(v uint64) string { return strconv.FormatUint(v, 10) }
func fix(v float64, prec int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return ""
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}
func opt(v metrics.Opt) string { return fix(float64(v), 3) }
func bit(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// Record renders the row in Columns order.
func (r Row) Record() []string {
	out := make(map[string]string, 40)
	out["timestamp"] = r.Time.Format(time.RFC3339Nano)
	out["timestamp_unix_milli"] = i64(r.Time.UnixMilli())
	out["elapsed_s"] = fix(r.Elapsed.Seconds(), 3)
	out["migration_event"] = bit(r.MigrationEvent)
	out["migration_active"] = bit(r.MigrationActive)
	out["container_host"] = r.Host
	if s := r.Server; s != nil {
		out["connected_clients"] = i64(s.ConnectedClients)
		out["total_clients"] = i64(s.TotalClients)
		out["bytes_sent"] = u64(s.BytesSent)
		out["bytes_received"] = u64(s.BytesReceived)
		out["uptime_s"] = fix(s.UptimeSeconds, 1)
		out["cpu_percent"] = fix(s.CPUPercent, 2)
		out["memory_mb"] = fix(s.MemoryMB, 2)
		out["server_frames_sent"] = u64(s.FramesSent)
		out["server_pings_stale"] = u64(s.PingsStale)
		out["server_quiesced"] = bit(s.Quiesced)
		out["rss_mb"] = fix(s.RSSMB, 2)
	}
	if l := r.Loadgen; l != nil {
		out["lg_connected_clients"] = strconv.Itoa(l.ConnectedClients)
		out["ws_rtt_avg_ms"] = opt(l.AvgRttMs)
		out["ws_rtt_p50_ms"] = opt(l.P50RttMs)
		out["ws_rtt_p95_ms"] = opt(l.P95RttMs)
		out["ws_rtt_p99_ms"] = opt(l.P99RttMs)
		out["ws_rtt_max_ms"] = opt(l.MaxRttMs)
		out["ws_jitter_ms"] = opt(l.JitterMs)
		out["connection_drops"] = i64(l.ConnectionDrops)
		out["lg_bytes_sent"] = u64(l.BytesSent)
		out["lg_bytes_received"] = u64(l.BytesReceived)
		out["lg_frames_per_s"] = fix(l.FramesPerSecond, 2)
		out["frames_received"] = u64(l.Received)
		out["frames_lost"] = u64(l.Lost)
		out["frames_duplicated"] = u64(l.Duplicated)
		out["frames_reordered"] = u64(l.Reordered)
		out["frame_gap_max_ms"] = fix(l.FrameGapMaxMs, 3)
		out["reconnects"] = i64(l.Reconnects)
		out["rtt_samples"] = strconv.Itoa(l.RTTSamples)
		out["rtt_over_cap"] = u64(l.RTTOverCap)
		out["ws_rtt_uncapped_p99_ms"] = opt(l.UncappedP99RttMs)
		out["ws_rtt_uncapped_max_ms"] = opt(l.UncappedMaxRttMs)
		out["pings_sent"] = u64(l.PingsSent)
		out["echoes_received"] = u64(l.EchoesReceived)
	}
	cols := Columns()
	rec := make([]string, len(cols))
	for i, c := range cols {
		rec[i] = out[c]
	}
	return rec
}

// CSVWriter appends rows to metrics.csv, flushing each, so a run that is
// interrupted keeps every row collected so far.
type CSVWriter struct {
	f *os.File
	w *csv.Writer
}

// CreateCSV creates path and writes the header.
func CreateCSV(path string) (*CSVWriter, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create metrics CSV: %w", err)
	}
	cw := &CSVWriter{f: f, w: csv.NewWriter(f)}
	if err := cw.write(Columns()); err != nil {
		f.Close()
		return nil, err
	}
	return cw, nil
}

func (cw *CSVWriter) write(rec []string) error {
	if err := cw.w.Write(rec); err != nil {
		return fmt.Errorf("write metrics CSV: %w", err)
	}
	cw.w.Flush()
	if err := cw.w.Error(); err != nil {
		return fmt.Errorf("write metrics CSV: %w", err)
	}
	return nil
}

// Write appends one row.
func (cw *CSVWriter) Write(r Row) error { return cw.write(r.Record()) }

// Close closes the file.
func (cw *CSVWriter) Close() error { return cw.f.Close() }

// Table is a metrics CSV read back, column by column.
type Table struct {
	Header []string
	Rows   [][]string
	idx    map[string]int
}

// ReadCSV reads a metrics CSV (ours or the seed's).
func ReadCSV(path string) (*Table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read metrics CSV: %w", err)
	}
	defer f.Close()
	return ParseCSV(f)
}

// ParseCSV reads a metrics CSV from r.
func ParseCSV(r io.Reader) (*Table, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	all, err := cr.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("parse metrics CSV: %w", err)
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("parse metrics CSV: no header")
	}
	t := &Table{Header: all[0], Rows: all[1:], idx: map[string]int{}}
	for i, h := range t.Header {
		t.idx[h] = i
	}
	return t, nil
}

// Has reports whether the table has a column.
func (t *Table) Has(col string) bool { _, ok := t.idx[col]; return ok }

// Len is the number of rows.
func (t *Table) Len() int { return len(t.Rows) }

// Str returns a column as text ("" where missing).
func (t *Table) Str(col string) []string {
	out := make([]string, len(t.Rows))
	i, ok := t.idx[col]
	if !ok {
		return out
	}
	for r, row := range t.Rows {
		if i < len(row) {
			out[r] = row[i]
		}
	}
	return out
}

// Float returns a column as numbers, NaN where a cell is empty or not a
// number (or the column is absent).
func (t *Table) Float(col string) []float64 {
	s := t.Str(col)
	out := make([]float64, len(s))
	for i, v := range s {
		f, err := strconv.ParseFloat(v, 64)
		if v == "" || err != nil {
			f = math.NaN()
		}
		out[i] = f
	}
	return out
}
