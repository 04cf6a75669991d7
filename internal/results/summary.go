package results

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/containerflow/containerflow/internal/loadgen"
	"github.com/containerflow/containerflow/internal/metrics"
	"github.com/containerflow/containerflow/internal/migration"
)

// SummaryFile is summary.json's name in a run directory.
const SummaryFile = "summary.json"

// Params are the experiment's settings as run.
type Params struct {
	SteadyStateS   float64 `json:"steady_state_s"`
	PostMigrationS float64 `json:"post_migration_s"`
	Migrations     int     `json:"migrations"`
	Connections    int     `json:"connections"`
	FPS            int     `json:"fps"`
	Quiesce        bool    `json:"quiesce"`
	Prefix         string  `json:"testbed_prefix"`
	// Impairments are the impaired links of the run, each in the words of
	// `cflow testbed impair` and with its mechanism.
	Impairments map[string]string `json:"impairments,omitempty"`
}

// Outcome is what the experiment knows of one migration attempt.
type Outcome struct {
	N        int
	From, To string
	Start    time.Time         // request sent
	End      time.Time         // answer received
	Record   *migration.Record // nil when no record came back
	Err      error
}

// PerMigration is one migration's line in the summary.
type PerMigration struct {
	N             int     `json:"n"`
	From          string  `json:"from"`
	To            string  `json:"to"`
	Status        string  `json:"status"`
	Error         string  `json:"error,omitempty"`
	StartUnixMs   int64   `json:"start_unix_ms"`
	EndUnixMs     int64   `json:"end_unix_ms"`
	TimeToReadyMs float64 `json:"time_to_ready_ms"`
	TotalMs       float64 `json:"total_ms"`
	CheckpointMs  float64 `json:"checkpoint_ms"`
	TransferMs    float64 `json:"transfer_ms"`
	RestoreMs     float64 `json:"restore_ms"`
	SwitchMs      float64 `json:"switch_ms"`
	CheckpointB   int64   `json:"checkpoint_size_bytes"`
	// DowntimeMs is the longest gap between two data frames on any
	// connection that ended between the request and the end of the
	// post-migration wait: the outage the clients felt. Null when no gap
	// as long as the load generator's threshold was seen.
	DowntimeMs metrics.Opt `json:"downtime_ms"`
}

// Summary is summary.json.
type Summary struct {
	Run         string    `json:"run"`
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished"`
	Interrupted bool      `json:"interrupted,omitempty"`
	Error       string    `json:"error,omitempty"`
	Params      Params    `json:"params"`

	Migrations int `json:"migrations"` // attempted
	Succeeded  int `json:"succeeded"`
	Failed     int `json:"failed"`

	ConnectionDrops  int64   `json:"connection_drops"`
	Reconnects       int64   `json:"reconnects"`
	ConnectionsUp    int     `json:"connections_up_at_end"`
	FramesReceived   uint64  `json:"frames_received"`
	FramesLost       uint64  `json:"frames_lost"`
	FramesDuplicated uint64  `json:"frames_duplicated"`
	FramesReordered  uint64  `json:"frames_reordered"`
	PingsSent        uint64  `json:"pings_sent"`
	EchoesReceived   uint64  `json:"echoes_received"`
	MaxFrameGapMs    float64 `json:"max_frame_gap_ms"`

	// DowntimeMs: client-visible downtime of the successful migrations
	// (PerMigration.DowntimeMs); TimeToReadyMs: the agents' freeze-to-ready
	// time, the seed's "downtime".
	DowntimeMs      metrics.Dist                `json:"downtime_ms"`
	TimeToReadyMs   metrics.Dist                `json:"time_to_ready_ms"`
	PhaseMs         map[string]metrics.MeanSDOf `json:"phase_ms"`
	CheckpointBytes metrics.Dist                `json:"checkpoint_size_bytes"`
	// RTTp50Ms is the distribution of the per-interval median RTT over the
	// whole run (intervals without echoes left out).
	RTTp50Ms     metrics.Dist   `json:"rtt_p50_ms"`
	PerMigration []PerMigration `json:"per_migration"`
}

// Phases reported with mean and sd, in report order.
var Phases = []string{"prepare", "freeze", "checkpoint", "transfer", "restore", "switch", "resume", "total"}

func phaseValues(r *migration.Record) map[string]float64 {
	return map[string]float64{"prepare": r.PrepareMs, "freeze": r.FreezeMs, "checkpoint": r.CheckpointMs, "transfer": r.TransferMs,
		"restore": r.RestoreMs, "switch": r.SwitchMs, "resume": r.ResumeMs, "total": r.TotalMs}
}

// Compute builds the summary from the migrations (in order), the load
// generator's final report and the per-interval median RTTs. settle is
// the post-migration wait: a migration's downtime is the longest frame gap
// that ended between its request and settle after its answer (or the next
// migration's request, if sooner), so a connection that stays silent
// after the switch still counts, and no gap counts for two migrations.
func Compute(p Params, outs []Outcome, rep loadgen.Report, settle time.Duration, rttP50 []float64) Summary {
	s := Summary{Params: p, Migrations: len(outs), PhaseMs: map[string]metrics.MeanSDOf{}}
	tot := rep.Totals()
	s.ConnectionDrops, s.Reconnects = tot.Drops, tot.Reconnects
	s.FramesReceived, s.FramesLost, s.FramesDuplicated, s.FramesReordered = tot.Received, tot.Lost, tot.Duplicated, tot.Reordered
	s.PingsSent, s.EchoesReceived, s.MaxFrameGapMs = tot.PingsSent, tot.EchoesReceived, tot.MaxGapMs
	for _, c := range rep.Connections {
		if c.Connected {
			s.ConnectionsUp++
		}
	}
	var down, ready, sizes []float64
	phases := map[string][]float64{}
	for i, o := range outs {
		pm := PerMigration{N: o.N, From: o.From, To: o.To, StartUnixMs: o.Start.UnixMilli(), EndUnixMs: o.End.UnixMilli(), DowntimeMs: metrics.None()}
		if o.Record != nil {
			r := o.Record
			pm.Status, pm.Error = r.Status, r.Error
			pm.TimeToReadyMs, pm.TotalMs, pm.CheckpointB = r.TimeToReadyMs, r.TotalMs, r.CheckpointB
			pm.CheckpointMs, pm.TransferMs, pm.RestoreMs, pm.SwitchMs = r.CheckpointMs, r.TransferMs, r.RestoreMs, r.SwitchMs
		}
		if o.Err != nil && pm.Error == "" {
			pm.Error = o.Err.Error()
		}
		if pm.Status == "" {
			pm.Status = migration.StatusFailed
		}
		until := o.End.Add(settle)
		if i+1 < len(outs) && outs[i+1].Start.Before(until) {
			until = outs[i+1].Start
		}
		if ms, ok := rep.MaxGapEndingIn(o.Start, until); ok {
			pm.DowntimeMs = metrics.Opt(ms)
		}
		if pm.Status == migration.StatusSuccess && o.Err == nil {
			s.Succeeded++
			if pm.DowntimeMs.Valid() {
				down = append(down, float64(pm.DowntimeMs))
			}
			ready = append(ready, pm.TimeToReadyMs)
			sizes = append(sizes, float64(pm.CheckpointB))
			for k, v := range phaseValues(o.Record) {
				phases[k] = append(phases[k], v)
			}
		} else {
			s.Failed++
		}
		s.PerMigration = append(s.PerMigration, pm)
	}
	s.DowntimeMs = metrics.Summarize(down)
	s.TimeToReadyMs = metrics.Summarize(ready)
	s.CheckpointBytes = metrics.Summarize(sizes)
	for _, k := range Phases {
		s.PhaseMs[k] = metrics.MeanSDSummary(phases[k])
	}
	var rtts []float64
	for _, v := range rttP50 {
		if !math.IsNaN(v) {
			rtts = append(rtts, v)
		}
	}
	s.RTTp50Ms = metrics.Summarize(rtts)
	return s
}

// Write writes the summary as indented JSON.
func (s *Summary) Write(path string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode summary: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	return nil
}

// ReadSummary reads summary.json.
func ReadSummary(path string) (*Summary, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read summary: %w", err)
	}
	var s Summary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return &s, nil
}
