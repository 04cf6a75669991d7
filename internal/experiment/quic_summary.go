package experiment

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/containerflow/containerflow/internal/metrics"
	"github.com/containerflow/containerflow/internal/migration"
	"github.com/containerflow/containerflow/internal/plot"
	"github.com/containerflow/containerflow/internal/results"
	"github.com/containerflow/containerflow/internal/workload/quic"
)

// WorkloadQUIC marks a QUIC run's summary.json (`cflow plot` tells the
// two experiments apart by it).
const WorkloadQUIC = "quic"

// Files of each condition's subdirectory.
const (
	ResponsesFile   = "responses.csv"    // one row per answered request
	PerSecondFile   = "per_second.csv"   // response times per second of sending
	ConnectionsFile = "connections.json" // the client's final per-connection stats
)

// QUICSummary is a QUIC run's summary.json.
type QUICSummary struct {
	Workload   string             `json:"workload"` // "quic"
	Run        string             `json:"run"`
	Params     QUICParams         `json:"params"`
	Conditions []ConditionSummary `json:"conditions"`
	// MemoryVerified: the server checked every page of its ballast after
	// the last migration (nil: not checked, no ballast or no answer).
	MemoryVerified *bool     `json:"memory_verified,omitempty"`
	Started        time.Time `json:"started"`
	Finished       time.Time `json:"finished"`
	Interrupted    bool      `json:"interrupted"`
	Error          string    `json:"error,omitempty"`
}

// QUICParams is how the run was made.
type QUICParams struct {
	Conditions     []string `json:"conditions"`
	Connections    int      `json:"connections"`
	Migrations     int      `json:"migrations_per_condition"`
	SteadyStateS   float64  `json:"steady_state_s"`
	PostMigrationS float64  `json:"post_migration_s"`
	IntervalMs     float64  `json:"request_interval_ms"`
	MinGapMs       float64  `json:"min_gap_ms"`
	MemoryMiB      int      `json:"memory_mib"`
	MgmtRate       string   `json:"mgmt_rate,omitempty"`
	Delay          string   `json:"client_delay,omitempty"`
	Jitter         string   `json:"client_jitter,omitempty"`
	Seed           uint64   `json:"seed"`
	Mode           string   `json:"migration_mode"`
	Prefix         string   `json:"prefix"`
}

// ConditionSummary is one condition's outcome.
type ConditionSummary struct {
	Condition
	Description string            `json:"description"`
	Dir         string            `json:"dir"`
	Impairments map[string]string `json:"impairments,omitempty"` // link -> as applied
	StartUnixMs int64             `json:"start_unix_ms"`         // the clients began to dial
	EndUnixMs   int64             `json:"end_unix_ms"`
	DurationS   float64           `json:"duration_s"`

	Migrations int `json:"migrations"`
	Succeeded  int `json:"succeeded"`
	Failed     int `json:"failed"`

	// Connections: how many the client opened; Survived: how many kept
	// their one connection (no drop, exactly one handshake). NewHandshakes
	// is every handshake beyond the first of each connection.
	Connections   int    `json:"connections"`
	Survived      int    `json:"survived"`
	Lost          int    `json:"connections_lost"`
	Handshakes    uint64 `json:"handshakes"`
	NewHandshakes uint64 `json:"new_handshakes"`
	Clean         int    `json:"clean_connections"` // quic.ConnStats.Clean: nothing lost, repeated or corrupt

	RequestsSent       uint64 `json:"requests_sent"`
	RequestsAnswered   uint64 `json:"requests_answered"`
	RequestsLost       uint64 `json:"requests_lost"` // never answered
	RequestsDuplicated uint64 `json:"requests_duplicated"`
	RequestErrors      uint64 `json:"request_errors"`
	ChunksReceived     uint64 `json:"download_chunks"`
	ChunksLost         uint64 `json:"download_chunks_lost"`

	RespP50Ms float64 `json:"response_p50_ms"`
	RespP99Ms float64 `json:"response_p99_ms"`
	RespMaxMs float64 `json:"response_max_ms"`
	// MaxSilenceMs: the longest silence on any connection over the whole
	// condition, migrations or not (the baseline's is the reference).
	MaxSilenceMs float64 `json:"max_silence_ms"`

	InterruptionMs metrics.Dist `json:"interruption_ms"`
	TimeToReadyMs  metrics.Dist `json:"time_to_ready_ms"`
	// QUIC's own counts (the client's, from quic-go's qlog events): in the
	// migrations' windows, and over the whole condition.
	QUICLostInWindows int    `json:"quic_lost_in_windows"`
	PTOsInWindows     int    `json:"ptos_in_windows"`
	QUICLost          uint64 `json:"quic_lost"`
	PTOs              uint64 `json:"ptos"`

	TransferMs        metrics.Dist `json:"transfer_ms"`
	StreamMs          metrics.Dist `json:"stream_ms"`
	TransferWireBytes metrics.Dist `json:"transfer_wire_bytes"`
	CheckpointBytes   metrics.Dist `json:"checkpoint_bytes"`
	Compress          string       `json:"compress_applied,omitempty"` // as the records say

	PerMigration []QUICMigration `json:"per_migration,omitempty"`
	Problems     []string        `json:"problems,omitempty"` // what is wrong with unclean connections
	Error        string          `json:"error,omitempty"`
}

// QUICMigration is one migration of a condition.
type QUICMigration struct {
	N                 int     `json:"n"`
	From              string  `json:"from"`
	To                string  `json:"to"`
	Status            string  `json:"status"`
	Error             string  `json:"error,omitempty"`
	StartUnixMs       int64   `json:"start_unix_ms"` // request sent
	EndUnixMs         int64   `json:"end_unix_ms"`   // answer received
	WindowEndUnixMs   int64   `json:"window_end_unix_ms"`
	InterruptionMs    float64 `json:"interruption_ms"` // 0: no silence of min_gap_ms or more
	ResponseGapMs     float64 `json:"response_gap_ms"`
	ChunkGapMs        float64 `json:"chunk_gap_ms"`
	QUICLost          int     `json:"quic_lost"`
	PTOs              int     `json:"ptos"`
	TimeToReadyMs     float64 `json:"time_to_ready_ms"`
	CheckpointMs      float64 `json:"checkpoint_ms"`
	TransferMs        float64 `json:"transfer_ms"`
	StreamMs          float64 `json:"stream_ms"`
	RestoreMs         float64 `json:"restore_ms"`
	CheckpointBytes   int64   `json:"checkpoint_size_bytes"`
	TransferWireBytes int64   `json:"transfer_wire_bytes"`
	Compress          string  `json:"compress,omitempty"`
	Mode              string  `json:"mode,omitempty"`
}

// Write saves the summary as indented JSON.
func (s *QUICSummary) Write(path string) error { return writeJSON(path, s) }

// ReadQUICSummary reads a QUIC run's summary.json.
func ReadQUICSummary(path string) (*QUICSummary, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s QUICSummary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &s, nil
}

// IsQUICRun says whether dir holds a QUIC experiment's results.
func IsQUICRun(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, results.SummaryFile))
	if err != nil {
		return false
	}
	var probe struct {
		Workload string `json:"workload"`
	}
	return json.Unmarshal(b, &probe) == nil && probe.Workload == WorkloadQUIC
}

// response is one answered request.
type response struct {
	sent time.Time
	conn int
	seq  uint64
	rtt  time.Duration
}

// recorder keeps every response of a condition (8 connections at 100
// requests/s are 800 a second: a slice is fine for minutes).
type recorder struct {
	mu   sync.Mutex
	resp []response
}

func (r *recorder) add(conn int, seq uint64, sent time.Time, rtt time.Duration) {
	r.mu.Lock()
	r.resp = append(r.resp, response{sent: sent, conn: conn, seq: seq, rtt: rtt})
	r.mu.Unlock()
}

func (r *recorder) sorted() []response {
	r.mu.Lock()
	out := slices.Clone(r.resp)
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].sent.Before(out[j].sent) })
	return out
}

// writeResponses writes responses.csv: when each request was sent
// (seconds since the condition's start and Unix µs), its connection,
// number and response time.
func writeResponses(path string, t0 time.Time, rs []response) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "elapsed_s,sent_unix_us,conn,request,response_ms")
	for _, r := range rs {
		fmt.Fprintf(w, "%.6f,%d,%d,%d,%.3f\n", r.sent.Sub(t0).Seconds(), r.sent.UnixMicro(), r.conn, r.seq, float64(r.rtt.Microseconds())/1000)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// secondRow is one second of per_second.csv.
type secondRow struct {
	second          int
	responses       int
	p50, p99, maxMs float64 // NaN: nothing sent in that second was answered
	migration       bool
}

var perSecondHeader = []string{"second", "unix_ms", "responses", "response_p50_ms", "response_p99_ms", "response_max_ms", "migration_active"}

// perSecond bins the responses by the second their request was sent in:
// a request sent into a freeze is charged to the moment the client
// issued it, which puts the spike on the migration's span.
func perSecond(t0, t1 time.Time, rs []response, migs []QUICMigration) []secondRow {
	n := int(math.Ceil(t1.Sub(t0).Seconds()))
	bins := make([][]float64, n)
	for _, r := range rs {
		i := int(r.sent.Sub(t0) / time.Second)
		if i >= 0 && i < n {
			bins[i] = append(bins[i], float64(r.rtt.Microseconds())/1000)
		}
	}
	rows := make([]secondRow, n)
	for i := range rows {
		row := secondRow{second: i, responses: len(bins[i]), p50: math.NaN(), p99: math.NaN(), maxMs: math.NaN()}
		if len(bins[i]) > 0 {
			d := metrics.Summarize(bins[i])
			row.p50, row.p99, row.maxMs = d.P50, d.P99, d.Max
		}
		from, to := t0.Add(time.Duration(i)*time.Second).UnixMilli(), t0.Add(time.Duration(i+1)*time.Second).UnixMilli()
		for _, m := range migs {
			if m.StartUnixMs < to && m.EndUnixMs >= from {
				row.migration = true
			}
		}
		rows[i] = row
	}
	return rows
}

func writePerSecond(path string, t0 time.Time, rows []secondRow) error {
	w, err := os.Create(path)
	if err != nil {
		return err
	}
	b := bufio.NewWriter(w)
	cell := func(v float64) string {
		if math.IsNaN(v) {
			return "" // no data is not zero
		}
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
	fmt.Fprintln(b, joinComma(perSecondHeader))
	for _, r := range rows {
		mig := 0
		if r.migration {
			mig = 1
		}
		fmt.Fprintf(b, "%d,%d,%d,%s,%s,%s,%d\n", r.second, t0.Add(time.Duration(r.second)*time.Second).UnixMilli(), r.responses,
			cell(r.p50), cell(r.p99), cell(r.maxMs), mig)
	}
	if err := b.Flush(); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

func joinComma(xs []string) string {
	s := ""
	for i, x := range xs {
		if i > 0 {
			s += ","
		}
		s += x
	}
	return s
}

// summarizeCondition turns a condition's client stats, responses and
// migration outcomes into its summary. windows[i] ends migration i's
// window: the next migration's request, or the end of the condition.
func summarizeCondition(cs *ConditionSummary, stats []quic.ConnStats, rs []response, outs []results.Outcome, end time.Time) {
	cs.Connections = len(stats)
	for _, s := range stats {
		if s.Drops == 0 && s.QUIC.Handshakes == 1 {
			cs.Survived++
		}
		cs.Handshakes += s.QUIC.Handshakes
		cs.RequestsSent += s.Requests
		cs.RequestsAnswered += s.Responses.Received - s.Responses.Duplicated
		cs.RequestsLost += s.Unanswered()
		cs.RequestsDuplicated += s.Responses.Duplicated
		cs.RequestErrors += s.RequestErrors
		cs.ChunksReceived += s.Download.Received
		cs.ChunksLost += s.Download.Lost
		cs.QUICLost += s.QUIC.PacketsLost
		cs.PTOs += s.QUIC.PTOs
		for _, g := range s.Gaps {
			cs.MaxSilenceMs = math.Max(cs.MaxSilenceMs, ms(g.Len))
		}
		if err := s.Clean(); err != nil {
			cs.Problems = append(cs.Problems, fmt.Sprintf("conn %d: %v", s.Conn, err))
		} else {
			cs.Clean++
		}
	}
	cs.Lost = cs.Connections - cs.Survived
	if h := uint64(cs.Connections); cs.Handshakes > h {
		cs.NewHandshakes = cs.Handshakes - h
	}
	var rtts []float64
	for _, r := range rs {
		rtts = append(rtts, float64(r.rtt.Microseconds())/1000)
	}
	if len(rtts) > 0 {
		d := metrics.Summarize(rtts)
		cs.RespP50Ms, cs.RespP99Ms, cs.RespMaxMs = d.P50, d.P99, d.Max
	}

	var inter, ready, xfer, strm, wire, ckpt []float64
	cs.Migrations = len(outs)
	for i, o := range outs {
		wend := end
		if i+1 < len(outs) {
			wend = outs[i+1].Start
		}
		m := QUICMigration{N: o.N, From: o.From, To: o.To, Status: migration.StatusFailed,
			StartUnixMs: o.Start.UnixMilli(), EndUnixMs: o.End.UnixMilli(), WindowEndUnixMs: wend.UnixMilli()}
		if o.Err != nil {
			m.Error = o.Err.Error()
		}
		if rec := o.Record; rec != nil {
			m.Status, m.TimeToReadyMs, m.CheckpointMs, m.TransferMs, m.StreamMs, m.RestoreMs = rec.Status, rec.TimeToReadyMs, rec.CheckpointMs, rec.TransferMs, rec.StreamMs, rec.RestoreMs
			m.CheckpointBytes, m.TransferWireBytes, m.Compress, m.Mode = rec.CheckpointB, rec.TransferWireB, rec.Compress, rec.Mode
			if m.Error == "" {
				m.Error = rec.Error
			}
		}
		for _, s := range stats {
			m.ResponseGapMs = math.Max(m.ResponseGapMs, ms(s.MaxGapIn(quic.GapResponse, o.Start, wend)))
			m.ChunkGapMs = math.Max(m.ChunkGapMs, ms(s.MaxGapIn(quic.GapChunk, o.Start, wend)))
			m.QUICLost += s.QUIC.LostIn(o.Start, wend)
			m.PTOs += s.QUIC.PTOsIn(o.Start, wend)
		}
		m.InterruptionMs = math.Max(m.ResponseGapMs, m.ChunkGapMs)
		cs.QUICLostInWindows += m.QUICLost
		cs.PTOsInWindows += m.PTOs
		if m.Status == migration.StatusSuccess && o.Err == nil {
			cs.Succeeded++
			inter = append(inter, m.InterruptionMs)
			ready = append(ready, m.TimeToReadyMs)
			xfer = append(xfer, m.TransferMs)
			strm = append(strm, m.StreamMs)
			wire = append(wire, float64(m.TransferWireBytes))
			ckpt = append(ckpt, float64(m.CheckpointBytes))
			if m.Compress != "" {
				cs.Compress = m.Compress
			}
		}
		cs.PerMigration = append(cs.PerMigration, m)
	}
	cs.Failed = cs.Migrations - cs.Succeeded
	cs.InterruptionMs, cs.TimeToReadyMs = metrics.Summarize(inter), metrics.Summarize(ready)
	cs.TransferMs, cs.StreamMs = metrics.Summarize(xfer), metrics.Summarize(strm)
	cs.TransferWireBytes, cs.CheckpointBytes = metrics.Summarize(wire), metrics.Summarize(ckpt)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// PlotQUIC draws the QUIC plots of a run directory from its summary.json
// and each condition's per_second.csv, and writes report.md again so it
// embeds them (what `cflow plot` calls).
func PlotQUIC(dir string) ([]string, error) {
	s, err := ReadQUICSummary(filepath.Join(dir, results.SummaryFile))
	if err != nil {
		return nil, err
	}
	names, err := plotQUIC(dir, s)
	if rerr := writeQUICReport(filepath.Join(dir, "report.md"), s, names); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return names, err
}

func plotQUIC(dir string, s *QUICSummary) ([]string, error) {
	var conds []plot.QUICCondition
	for _, c := range s.Conditions {
		pc := plot.QUICCondition{Name: c.Name, Compress: c.Condition.Compress}
		if c.Limited {
			pc.Limited = s.Params.MgmtRate
		}
		tab, err := results.ReadCSV(filepath.Join(dir, c.Dir, PerSecondFile))
		if err != nil {
			return nil, err
		}
		for _, v := range tab.Float("second") {
			pc.T = append(pc.T, v+0.5)
		}
		pc.P50, pc.P99, pc.Max = tab.Float("response_p50_ms"), tab.Float("response_p99_ms"), tab.Float("response_max_ms")
		t0 := float64(c.StartUnixMs)
		for _, m := range c.PerMigration {
			ok := m.Status == migration.StatusSuccess
			pc.Migrations = append(pc.Migrations, plot.QUICSpan{Start: (float64(m.StartUnixMs) - t0) / 1000, End: (float64(m.EndUnixMs) - t0) / 1000, OK: ok})
			if ok {
				pc.InterruptionsMs = append(pc.InterruptionsMs, m.InterruptionMs)
				pc.TransferMs = append(pc.TransferMs, m.TransferMs)
				pc.WireBytes = append(pc.WireBytes, float64(m.TransferWireBytes))
				pc.ImageBytes = append(pc.ImageBytes, float64(m.CheckpointBytes))
			}
		}
		conds = append(conds, pc)
	}
	return plot.QUIC(dir, conds)
}
