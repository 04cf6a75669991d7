package plot

import (
	"fmt"
	"image/color"
	"math"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/containerflow/containerflow/internal/metrics"
)

func withAlpha(c color.Color, a uint8) color.Color {
	r, g, b, _ := c.RGBA()
	return color.NRGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), a}
}

// locations labels each row with where the container was, or "migration"
// for rows during a migration and within settle seconds after one.
func (r *run) locations(settle float64) []string {
	host := r.tab.Str("container_host")
	out := make([]string, r.tab.Len())
	for i := range out {
		out[i] = host[i]
		for _, s := range r.spans {
			// A row covers the interval that ends at its time.
			if r.t[i] >= s.start && r.t[i]-1 <= s.end+settle {
				out[i] = "migration"
			}
		}
	}
	if !r.tab.Has("container_host") {
		// A seed CSV: follow the timing records from hostA.
		where := "hostA"
		for i := range out {
			if out[i] == "migration" {
				continue
			}
			for _, s := range r.spans {
				if s.ok && r.t[i] > s.end {
					where = s.to
				}
			}
			out[i] = where
		}
	}
	return out
}

func drawRTTByLocation(r *run, dir string, d def) error {
	// Log scale: the intervals around a migration reach hundreds of ms,
	// which on a linear axis flattens the steady-state boxes to a line.
	p := newPlot(d.title+" (median RTT of each 1 s interval)", "", "RTT (ms, log scale)")
	useLog(p)
	loc := r.locations(2)
	rtt := r.tab.Float("ws_rtt_p50_ms")
	groups := map[string]plotter.Values{}
	for i, v := range rtt {
		if !math.IsNaN(v) && loc[i] != "" {
			groups[loc[i]] = append(groups[loc[i]], v)
		}
	}
	var names []string
	colors := map[string]color.Color{"hostA": green, "hostB": orange, "migration": red}
	x := 0.0
	for _, g := range []string{"hostA", "hostB", "migration"} {
		v := groups[g]
		if len(v) == 0 {
			continue
		}
		box, err := plotter.NewBoxPlot(vg.Points(40), x, v)
		if err != nil {
			return err
		}
		box.FillColor = withAlpha(colors[g], 110)
		p.Add(box)
		label := "on " + g
		if g == "migration" {
			label = "during / ≤2 s after\na migration"
		}
		names = append(names, fmt.Sprintf("%s\nn=%d, median %.3f ms", label, len(v), metrics.Percentile(v, 50)))
		x++
	}
	if len(names) == 0 {
		noData(p, "no RTT samples")
		return single(dir, d, p, 16*vg.Centimeter, 12*vg.Centimeter)
	}
	p.NominalX(names...)
	p.Legend = plot.NewLegend()
	return single(dir, d, p, 16*vg.Centimeter, 12*vg.Centimeter)
}

// cdfLine is an empirical CDF as a step line.
func cdfLine(xs []float64) plotter.XYs {
	s := append([]float64{}, xs...)
	sort.Float64s(s)
	var pts plotter.XYs
	prev := 0.0
	for i, x := range s {
		pts = append(pts, plotter.XY{X: x, Y: prev})
		prev = float64(i+1) / float64(len(s))
		pts = append(pts, plotter.XY{X: x, Y: prev})
	}
	return pts
}

func drawDowntimeCDF(r *run, dir string, d def) error {
	p := newPlot(d.title, "downtime (ms)", "fraction of migrations ≤ x")
	var client, ready []float64
	for _, s := range r.spans {
		if !s.ok {
			continue
		}
		ready = append(ready, s.readyMs)
		if !math.IsNaN(s.downMs) && s.downMs > 0 {
			client = append(client, s.downMs)
		}
	}
	if len(ready) == 0 {
		for _, t := range succeeded(r) {
			ready = append(ready, t.TimeToReadyMs)
		}
	}
	if len(ready) == 0 {
		noData(p, "no successful migration")
		return single(dir, d, p, 18*vg.Centimeter, 11*vg.Centimeter)
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, x := range append(append([]float64{}, client...), ready...) {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	for _, c := range []struct {
		name string
		xs   []float64
		col  color.Color
	}{{"client-visible (longest frame gap)", client, blue}, {"time to ready (agents)", ready, orange}} {
		if len(c.xs) == 0 {
			continue
		}
		ds := metrics.Summarize(c.xs)
		l, err := plotter.NewLine(cdfLine(c.xs))
		if err != nil {
			return err
		}
		l.LineStyle = draw.LineStyle{Color: c.col, Width: 2}
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("%s, n=%d: p50 %.0f, p95 %.0f, p99 %.0f, mean %.0f (sd %.0f) ms", c.name, ds.N, ds.P50, ds.P95, ds.P99, ds.Mean, ds.SD), l)
		for _, q := range []float64{ds.P50, ds.P95, ds.P99} {
			p.Add(vline{X: q, Style: draw.LineStyle{Color: withAlpha(c.col, 140), Width: 0.8, Dashes: dotted}})
		}
	}
	pad := math.Max((hi-lo)*0.1, 5)
	p.X.Min, p.X.Max = math.Max(0, lo-pad), hi+pad
	p.Y.Min, p.Y.Max = 0, 1.3 // room for the legend
	p.Y.Tick.Marker = fixedTicks{0, 0.25, 0.5, 0.75, 1}
	p.Legend.Add("dotted lines: p50, p95, p99", vline{Style: draw.LineStyle{Color: grey, Width: 0.8, Dashes: dotted}})
	return single(dir, d, p, 20*vg.Centimeter, 12*vg.Centimeter)
}
