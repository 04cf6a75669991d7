package plot

import (
	"fmt"
	"image/color"
	"math"

	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/containerflow/containerflow/internal/metrics"
)

// window returns how many seconds before and after a migration start the
// ensemble covers: up to 5 s before (no more than the run had before its
// first migration) and up to 25 s after (no more than the post-migration
// wait, when known).
func (r *run) window() (before, after float64) {
	before, after = 5, 25
	if len(r.spans) > 0 {
		before = math.Max(1, math.Min(before, math.Floor(r.spans[0].start)))
	}
	if r.sum != nil && r.sum.Params.PostMigrationS > 0 {
		after = math.Min(after, math.Max(2, r.sum.Params.PostMigrationS))
	} else if len(r.spans) > 1 {
		after = math.Min(after, math.Max(2, r.spans[1].start-r.spans[0].start))
	}
	return before, after
}

func drawEnsemble(r *run, dir string, d def, ys []float64, yLabel string, col color.Color, logY bool) error {
	p := newPlot(d.title, "time relative to migration start (s)", yLabel)
	if logY {
		useLog(p)
	}
	before, after := r.window()
	if len(r.spans) == 0 {
		noData(p, "no migration")
		return single(dir, d, p, 20*vg.Centimeter, 11*vg.Centimeter)
	}
	nb := int(before + after + 1)
	bins := make([][]float64, nb)
	light := withAlpha(col, 70)
	var ttr []float64
	for i, s := range r.spans {
		xs, vs := []float64{}, []float64{}
		for j := range r.t {
			rel := r.tm[j] - s.start
			if rel < -before-0.5 || rel > after+0.5 {
				continue
			}
			xs, vs = append(xs, rel), append(vs, ys[j])
			if b := int(math.Round(rel + before)); b >= 0 && b < nb && !math.IsNaN(ys[j]) && (!logY || ys[j] > 0) {
				bins[b] = append(bins[b], ys[j])
			}
		}
		label := ""
		if i == 0 {
			label = "each migration"
		}
		addSeries(p, label, xs, vs, light, 0.8, nil)
		if s.ok && s.readyMs > 0 {
			ttr = append(ttr, s.readyMs)
		}
	}
	gx := make([]float64, nb)
	mean, lo, hi := make([]float64, nb), make([]float64, nb), make([]float64, nb)
	for b := range bins {
		gx[b] = float64(b) - before
		mean[b], lo[b], hi[b] = math.NaN(), math.NaN(), math.NaN()
		if len(bins[b]) > 0 {
			mean[b], _ = metrics.MeanSD(bins[b])
			lo[b], hi[b] = metrics.Percentile(bins[b], 25), metrics.Percentile(bins[b], 75)
		}
	}
	if poly := band(gx, lo, hi, withAlpha(col, 60)); poly != nil {
		p.Add(poly)
		p.Legend.Add("interquartile range (p25–p75)", swatch{withAlpha(col, 60)})
	}
	addSeries(p, "mean", gx, mean, col, 2.2, nil)
	start := vline{X: 0, Style: draw.LineStyle{Color: red, Width: 1.4, Dashes: dashed}}
	p.Add(start)
	p.Legend.Add("migration start", start)
	if len(ttr) > 0 {
		m, _ := metrics.MeanSD(ttr)
		ready := vline{X: m / 1000, Style: draw.LineStyle{Color: orange, Width: 1.2, Dashes: dotted}}
		p.Add(ready)
		p.Legend.Add(fmt.Sprintf("mean time to ready (%.0f ms)", m), ready)
	}
	p.Title.Text = fmt.Sprintf("%s — %s aligned at t = 0", d.title, plural(len(r.spans), "migration", "migrations"))
	p.X.Min, p.X.Max = -before, after
	p.Legend.Left = false
	if !logY {
		p.Y.Min = 0
		p.Y.Max = math.Max(p.Y.Max*1.5, 1)
	} else {
		logHeadroom(p, 5)
	}
	return single(dir, d, p, 20*vg.Centimeter, 11*vg.Centimeter)
}

func drawEnsembleRTT(r *run, dir string, d def) error {
	return drawEnsemble(r, dir, d, r.tab.Float("ws_rtt_p50_ms"), "median RTT (ms, log scale)", blue, true)
}

func drawEnsembleThroughput(r *run, dir string, d def) error {
	col := "lg_bytes_received"
	label := "data received by the clients (KiB/s)"
	if !r.tab.Has(col) {
		col, label = "bytes_sent", "server writes (KiB/s)"
	}
	return drawEnsemble(r, dir, d, r.rate(col, 1024), label, green, false)
}
