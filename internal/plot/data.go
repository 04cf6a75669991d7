package plot

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/containerflow/containerflow/internal/results"
)

// run is what the plots read from a run directory.
type run struct {
	tab     *results.Table
	t       []float64 // seconds since the first row
	tm      []float64 // middle of each row's interval: where its values are drawn
	t0ms    float64   // first row's Unix milliseconds
	timings []results.Timing
	sum     *results.Summary // nil when the directory has none (a seed run)
	spans   []span           // migrations on the time axis
}

// span is one migration on the time axis.
type span struct {
	n          int
	start, end float64 // seconds since the first row
	ok         bool    // succeeded
	readyMs    float64 // time to ready
	downMs     float64 // client-visible, NaN if unknown
	to         string
}

func load(dir string) (*run, error) {
	tab, err := results.ReadCSV(filepath.Join(dir, results.MetricsFile))
	if err != nil {
		return nil, err
	}
	if tab.Len() == 0 {
		return nil, fmt.Errorf("%s has no rows", results.MetricsFile)
	}
	r := &run{tab: tab}
	ms := tab.Float("timestamp_unix_milli")
	if math.IsNaN(ms[0]) {
		// The seed's fallback: elapsed seconds.
		r.t = tab.Float("elapsed_s")
	} else {
		r.t0ms = ms[0]
		r.t = make([]float64, len(ms))
		for i, v := range ms {
			r.t[i] = (v - ms[0]) / 1000
		}
	}
	// A row holds what was measured over the interval that ended at its
	// time; drawn at the interval's middle, a spike lines up with the
	// migration that caused it.
	half := 0.5
	if len(r.t) > 1 {
		half = (r.t[len(r.t)-1] - r.t[0]) / float64(len(r.t)-1) / 2
	}
	r.tm = make([]float64, len(r.t))
	for i, v := range r.t {
		r.tm[i] = v - half
	}
	if r.timings, err = results.LoadTimings(dir); err != nil {
		return nil, err
	}
	if s, err := results.ReadSummary(filepath.Join(dir, results.SummaryFile)); err == nil {
		r.sum = s
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	r.spans = r.makeSpans()
	return r, nil
}

// makeSpans places migrations on the time axis: from the summary's
// request/answer times when there is one, else from the timing records
// (migration_start_ns to migration_end_ns, as the seed's script).
func (r *run) makeSpans() []span {
	rel := func(unixMs float64) float64 { return (unixMs - r.t0ms) / 1000 }
	var out []span
	if r.sum != nil && r.t0ms != 0 {
		for _, pm := range r.sum.PerMigration {
			out = append(out, span{n: pm.N, start: rel(float64(pm.StartUnixMs)), end: rel(float64(pm.EndUnixMs)),
				ok: pm.Status == "success", readyMs: pm.TimeToReadyMs, downMs: float64(pm.DowntimeMs), to: pm.To})
		}
		return out
	}
	for _, tm := range r.timings {
		if tm.MigrationStartNs == 0 || r.t0ms == 0 {
			continue
		}
		end := tm.MigrationEndNs
		if end == 0 {
			end = tm.MigrationStartNs + int64(tm.TotalMs*1e6)
		}
		out = append(out, span{n: tm.N, start: rel(float64(tm.MigrationStartNs) / 1e6), end: rel(float64(end) / 1e6),
			ok: tm.Status == "success", readyMs: tm.TimeToReadyMs, downMs: math.NaN(), to: tm.TargetNode})
	}
	return out
}

// rate turns a cumulative counter into a per-second rate (in unit per
// second after dividing by div); NaN where either end is missing or the
// counter went backwards.
func (r *run) rate(col string, div float64) []float64 {
	v := r.tab.Float(col)
	out := make([]float64, len(v))
	out[0] = math.NaN()
	// The last value seen, so an interval after a failed scrape is not
	// lost: its increase is spread over the time since that value.
	lastI := -1
	if !math.IsNaN(v[0]) {
		lastI = 0
	}
	for i := 1; i < len(v); i++ {
		out[i] = math.NaN()
		if math.IsNaN(v[i]) {
			continue
		}
		if lastI >= 0 && v[i] >= v[lastI] && r.t[i] > r.t[lastI] {
			out[i] = (v[i] - v[lastI]) / (r.t[i] - r.t[lastI]) / div
		}
		lastI = i
	}
	return out
}

func finite(xs []float64) []float64 {
	var out []float64
	for _, x := range xs {
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			out = append(out, x)
		}
	}
	return out
}
