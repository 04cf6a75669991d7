package plot

import (
	"fmt"
	"image/color"
	"math"
	"math/rand/v2"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/containerflow/containerflow/internal/metrics"
	"github.com/containerflow/containerflow/internal/results"
)

// phaseOrder is the order of the phases that make up the time to ready
// (checkpoint_start -> ready); "other" is whatever the record's time to
// ready has beyond their sum.
var phaseOrder = []string{"checkpoint", "transfer", "restore", "switch", "resume"}

var phaseLabel = map[string]string{"checkpoint": "checkpoint (incl. freeze)", "transfer": "transfer", "restore": "restore",
	"switch": "switch update", "resume": "resume (unlock)", "other": "other"}

func phaseOf(t results.Timing, k string) float64 {
	switch k {
	case "checkpoint":
		return t.CheckpointMs
	case "transfer":
		return t.TransferMs
	case "restore":
		return t.RestoreMs
	case "switch":
		return t.SwitchMs
	case "resume":
		return t.ResumeMs
	}
	sum := 0.0
	for _, p := range phaseOrder {
		sum += phaseOf(t, p)
	}
	return math.Max(0, t.TimeToReadyMs-sum)
}

func succeeded(r *run) []results.Timing {
	var out []results.Timing
	for _, t := range r.timings {
		if t.Status == "success" {
			out = append(out, t)
		}
	}
	return out
}

// noData marks an empty plot so a reader is not left guessing.
func noData(p *plot.Plot, what string) {
	p.Title.Text += " — " + what
	p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = 0, 1, 0, 1
	if p.Y.Scale == logScale {
		p.Y.Min, p.Y.Max = 0.1, 10
	}
}

func drawPhaseMeans(r *run, dir string, d def) error {
	ok := succeeded(r)
	p := newPlot(d.title, "duration (ms)", "")
	if len(ok) == 0 {
		noData(p, "no successful migration")
		return single(dir, d, p, 18*vg.Centimeter, 10*vg.Centimeter)
	}
	var ready []float64
	for _, t := range ok {
		ready = append(ready, t.TimeToReadyMs)
	}
	rd := metrics.Summarize(ready)
	p.Title.Text = fmt.Sprintf("Migration phases (mean ± sd) — %s, time to ready: mean %.0f ms, p50 %.0f, p95 %.0f, p99 %.0f",
		plural(len(ok), "migration", "migrations"), rd.Mean, rd.P50, rd.P95, rd.P99)
	p.Title.TextStyle.Font.Size = vg.Points(11)
	// Top to bottom in phase order: the y axis grows upwards, so reverse.
	keys := append([]string{}, phaseOrder...)
	names := make([]string, len(keys))
	var xerr plotter.XErrors
	var pts plotter.XYs
	var labels []string
	maxEnd := 0.0
	for i := range keys {
		k := keys[len(keys)-1-i]
		var v []float64
		for _, t := range ok {
			v = append(v, phaseOf(t, k))
		}
		m := metrics.MeanSDSummary(v)
		names[i] = phaseLabel[k]
		bar, err := plotter.NewBarChart(plotter.Values{m.Mean}, vg.Points(18))
		if err != nil {
			return err
		}
		bar.Horizontal = true
		bar.Color = phaseColor[k]
		bar.LineStyle.Width = 0
		bar.Offset = 0
		bar.XMin = float64(i)
		p.Add(bar)
		pts = append(pts, plotter.XY{X: m.Mean, Y: float64(i)})
		xerr = append(xerr, struct{ Low, High float64 }{m.SD, m.SD})
		labels = append(labels, fmt.Sprintf("  %.1f ± %.1f ms", m.Mean, m.SD))
		maxEnd = math.Max(maxEnd, m.Mean+m.SD)
	}
	eb, err := plotter.NewXErrorBars(struct {
		plotter.XYer
		plotter.XErrorer
	}{pts, xerr})
	if err != nil {
		return err
	}
	eb.LineStyle.Color = grey
	p.Add(eb)
	lpts := make(plotter.XYs, len(pts))
	for i := range pts {
		lpts[i] = plotter.XY{X: pts[i].X + xerr[i].High, Y: pts[i].Y}
	}
	lab, err := plotter.NewLabels(plotter.XYLabels{XYs: lpts, Labels: labels})
	if err != nil {
		return err
	}
	for i := range lab.TextStyle {
		lab.TextStyle[i].YAlign = draw.YCenter
		lab.TextStyle[i].Font.Size = vg.Points(9)
	}
	p.Add(lab)
	p.NominalY(names...)
	p.X.Min, p.X.Max = 0, math.Max(maxEnd*1.35, 1)
	return single(dir, d, p, 20*vg.Centimeter, 10*vg.Centimeter)
}

func drawPhaseBars(r *run, dir string, d def) error {
	p := newPlot(d.title, "migration number (× = failed)", "duration (ms)")
	if len(r.timings) == 0 {
		noData(p, "no migration")
		return single(dir, d, p, wide, tall)
	}
	var names []string
	for _, t := range r.timings {
		// Short labels: 25 or more must fit side by side.
		n := strconv.Itoa(t.N)
		if t.Status != "success" {
			n += "×"
		}
		names = append(names, n)
	}
	var below *plotter.BarChart
	w := vg.Length(math.Max(4, math.Min(22, 400/float64(len(r.timings)))))
	for _, k := range append(append([]string{}, phaseOrder...), "other") {
		vals := make(plotter.Values, len(r.timings))
		for i, t := range r.timings {
			if t.Status == "success" {
				vals[i] = phaseOf(t, k)
			}
		}
		bar, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return err
		}
		bar.Color = phaseColor[k]
		bar.LineStyle.Width = 0
		if below != nil {
			bar.StackOn(below)
		}
		p.Add(bar)
		p.Legend.Add(phaseLabel[k], bar)
		below = bar
	}
	// The time to ready on top of each bar.
	var pts plotter.XYs
	var labels []string
	top := 0.0
	for i, t := range r.timings {
		lbl := fmt.Sprintf("%.0f", t.TimeToReadyMs)
		if t.Status != "success" {
			lbl = "" // marked × on the axis; its status is in the report
		}
		pts = append(pts, plotter.XY{X: float64(i), Y: t.TimeToReadyMs})
		labels = append(labels, lbl)
		top = math.Max(top, t.TimeToReadyMs)
	}
	lab, err := plotter.NewLabels(plotter.XYLabels{XYs: pts, Labels: labels})
	if err != nil {
		return err
	}
	for i := range lab.TextStyle {
		lab.TextStyle[i].XAlign = draw.XCenter
		lab.TextStyle[i].Font.Size = vg.Points(8)
	}
	lab.Offset = vg.Point{Y: vg.Points(3)}
	p.Add(lab)
	p.NominalX(names...)
	p.Y.Min, p.Y.Max = 0, math.Max(top*1.5, 1)
	p.X.Min, p.X.Max = -0.7, float64(len(names))-0.3
	p.Legend.Left = false
	p.Legend.Add("(number on top: time to ready, ms)", swatch{color.Transparent})
	return single(dir, d, p, max(wide, vg.Length(len(names))*vg.Centimeter), tall)
}

func drawPhaseBoxes(r *run, dir string, d def) error {
	ok := succeeded(r)
	p := newPlot(d.title, "phase", "duration (ms)")
	if len(ok) == 0 {
		noData(p, "no successful migration")
		return single(dir, d, p, 18*vg.Centimeter, 12*vg.Centimeter)
	}
	rnd := rand.New(rand.NewPCG(1, 2)) // fixed: the same run gives the same picture
	var names []string
	for i, k := range phaseOrder {
		var v plotter.Values
		for _, t := range ok {
			v = append(v, phaseOf(t, k))
		}
		box, err := plotter.NewBoxPlot(vg.Points(30), float64(i), v)
		if err != nil {
			return err
		}
		box.FillColor = withAlpha(phaseColor[k], 110)
		p.Add(box)
		var pts plotter.XYs
		for _, x := range v {
			pts = append(pts, plotter.XY{X: float64(i) + (rnd.Float64()-0.5)*0.25, Y: x})
		}
		sc, err := plotter.NewScatter(pts)
		if err != nil {
			return err
		}
		sc.GlyphStyle = draw.GlyphStyle{Color: phaseColor[k], Radius: vg.Points(2), Shape: draw.CircleGlyph{}}
		p.Add(sc)
		names = append(names, fmt.Sprintf("%s\nn=%d", phaseLabel[k], len(v)))
	}
	p.NominalX(names...)
	p.Y.Min = 0
	p.Legend = plot.NewLegend()
	return single(dir, d, p, 20*vg.Centimeter, 12*vg.Centimeter)
}
