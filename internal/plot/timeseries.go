package plot

import (
	"fmt"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

const timeAxis = "time since collection started (s)"

var (
	dashed = []vg.Length{vg.Points(5), vg.Points(3)}
	dotted = []vg.Length{vg.Points(1.5), vg.Points(2)}
)

func single(dir string, d def, p *plot.Plot, w, h vg.Length) error {
	fixLog(p)
	return save(dir, d.name, w, h, func(c draw.Canvas) { p.Draw(c) })
}

// stacked draws plots one above the other with aligned axes.
func stacked(dir string, d def, ps []*plot.Plot, w, h vg.Length) error {
	grid := make([][]*plot.Plot, len(ps))
	for i, p := range ps {
		grid[i] = []*plot.Plot{p}
	}
	for _, p := range ps {
		fixLog(p)
	}
	return save(dir, d.name, w, h, func(c draw.Canvas) {
		tiles := draw.Tiles{Rows: len(ps), Cols: 1, PadX: vg.Millimeter, PadY: 3 * vg.Millimeter,
			PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 2 * vg.Millimeter}
		cs := plot.Align(grid, tiles, c)
		for i := range ps {
			ps[i].Draw(cs[i][0])
		}
	})
}

func drawRTT(r *run, dir string, d def) error {
	p := newPlot(d.title+" per 1 s interval; gaps: no echo in that interval", timeAxis, "RTT (ms, log scale)")
	useLog(p)
	addSpans(p, r)
	addSeries(p, "max incl. echoes over the 1 s cap", r.tm, r.tab.Float("ws_rtt_uncapped_max_ms"), grey, 0.8, nil)
	addSeries(p, "p99", r.tm, r.tab.Float("ws_rtt_p99_ms"), red, 1.2, dotted)
	addSeries(p, "p95", r.tm, r.tab.Float("ws_rtt_p95_ms"), orange, 1.2, dashed)
	addSeries(p, "p50 (median)", r.tm, r.tab.Float("ws_rtt_p50_ms"), blue, 1.6, nil)
	logHeadroom(p, 5)
	return single(dir, d, p, wide, tall)
}

func drawJitter(r *run, dir string, d def) error {
	p := newPlot(d.title+" per 1 s interval", timeAxis, "jitter (ms, log scale)")
	useLog(p)
	addSpans(p, r)
	addSeries(p, "jitter: mean |RTT(n) − RTT(n−1)| of a connection's consecutive pings", r.tm, r.tab.Float("ws_jitter_ms"), purple, 1.4, nil)
	logHeadroom(p, 3)
	return single(dir, d, p, wide, tall)
}

func drawThroughput(r *run, dir string, d def) error {
	p := newPlot(d.title, timeAxis, "throughput (KiB/s)")
	addSpans(p, r)
	addSeries(p, "server writes (server's bytes_sent)", r.tm, r.rate("bytes_sent", 1024), orange, 1.6, nil)
	addSeries(p, "received by the clients (load generator)", r.tm, r.rate("lg_bytes_received", 1024), blue, 1.2, dashed)
	addSeries(p, "clients' pings read by the server", r.tm, r.rate("bytes_received", 1024), green, 1.2, dotted)
	p.Y.Min = 0
	p.Y.Max = math.Max(p.Y.Max*1.25, 1) // room for the legend
	return single(dir, d, p, wide, tall)
}

func drawHealth(r *run, dir string, d def) error {
	top := newPlot(d.title, "", "connections / count")
	addSpans(top, r)
	addSeries(top, "connected (clients' view)", r.tm, r.tab.Float("lg_connected_clients"), blue, 2, nil)
	addSeries(top, "connected (server's view)", r.tm, r.tab.Float("connected_clients"), orange, 1.2, dashed)
	// The totals go into the labels: at 0 the two lines lie on the axis
	// and on each other.
	drops := r.tab.Float("connection_drops")
	addSeries(top, fmt.Sprintf("connection drops (cumulative; total %s)", lastValue(drops)), r.tm, drops, red, 1.4, nil)
	if r.tab.Has("frames_lost") {
		lost := r.tab.Float("frames_lost")
		addSeries(top, fmt.Sprintf("frames lost (cumulative; total %s)", lastValue(lost)), r.tm, lost, purple, 1.4, dotted)
	}
	top.Y.Min = 0
	top.Y.Max = math.Max(top.Y.Max*2.2, 1) // the legend goes above the lines
	bottom := newPlot("", timeAxis, "longest frame gap (ms)")
	addSpans(bottom, r)
	addSeries(bottom, "longest gap between two frames on any connection, per interval", r.tm, r.tab.Float("frame_gap_max_ms"), green, 1.4, nil)
	bottom.Y.Min = 0
	bottom.Y.Max = math.Max(bottom.Y.Max*1.3, 1)
	bottom.Legend = plot.NewLegend()
	bottom.Legend.Top, bottom.Legend.Left = true, true
	bottom.Legend.TextStyle.Font.Size = vg.Points(9)
	bottom.Legend.Add("longest gap between two data frames on any connection", lineThumb(green))
	return stacked(dir, d, []*plot.Plot{top, bottom}, wide, 14*vg.Centimeter)
}

func lineThumb(c interface{ RGBA() (r, g, b, a uint32) }) vline {
	return vline{Style: draw.LineStyle{Color: c, Width: 1.4}}
}

func drawResources(r *run, dir string, d def) error {
	cpu := newPlot(d.title, "", "CPU (% of one core)")
	addSpans(cpu, r)
	addSeries(cpu, "server CPU", r.tm, r.tab.Float("cpu_percent"), blue, 1.4, nil)
	cpu.Y.Min = 0
	cpu.Y.Max = math.Max(cpu.Y.Max*1.3, 1)
	mem := newPlot("", timeAxis, "memory (MiB)")
	addSpans(mem, r)
	addSeries(mem, "Go runtime memory (memory_mb, as the seed)", r.tm, r.tab.Float("memory_mb"), orange, 1.4, nil)
	addSeries(mem, "resident set size (rss_mb)", r.tm, r.tab.Float("rss_mb"), green, 1.4, dashed)
	mem.Y.Min = 0
	mem.Y.Max = math.Max(mem.Y.Max*1.4, 1)
	return stacked(dir, d, []*plot.Plot{cpu, mem}, wide, 14*vg.Centimeter)
}

// logHeadroom raises a log axis' top so that a legend of n entries sits
// above the data.
func logHeadroom(p *plot.Plot, n int) {
	if p.Y.Max > 0 && p.Y.Min > 0 && p.Y.Max > p.Y.Min {
		decades := math.Log10(p.Y.Max / p.Y.Min)
		p.Y.Max *= math.Pow(10, math.Max(0.6, decades*0.06*float64(n)))
	}
}

// fixLog keeps a log axis drawable: gonum widens an empty or flat range
// by ±1, which goes below zero and panics on a log scale.
func fixLog(p *plot.Plot) {
	if p.Y.Scale != logScale {
		return
	}
	lo, hi := p.Y.Min, p.Y.Max
	if math.IsInf(lo, 0) || math.IsNaN(lo) || lo <= 0 || math.IsInf(hi, 0) || math.IsNaN(hi) || hi <= 0 {
		lo, hi = 0.1, 10
	}
	if hi <= lo*1.01 {
		lo, hi = lo/2, hi*2
	}
	p.Y.Min, p.Y.Max = lo, hi
}

// lastValue is a cumulative column's final value, as text.
func lastValue(xs []float64) string {
	for i := len(xs) - 1; i >= 0; i-- {
		if !math.IsNaN(xs[i]) {
			return fmt.Sprintf("%.0f", xs[i])
		}
	}
	return "unknown"
}
