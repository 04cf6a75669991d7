package plot

import (
	"errors"
	"fmt"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/containerflow/containerflow/internal/metrics"
)

// QUICCondition is one condition of the QUIC experiment as its plots need
// it. The plots take plain numbers, not the experiment's files, so that
// this package does not depend on the experiment (which depends on it).
type QUICCondition struct {
	Name string
	// Per-second response times, by when the request was sent: T is the
	// middle of each second since the condition's clients dialed; NaN
	// where no request sent in that second was answered.
	T, P50, P99, Max []float64
	Migrations       []QUICSpan
	// InterruptionsMs: each successful migration's longest silence on any
	// connection.
	InterruptionsMs []float64
	// Migration costs, per successful migration.
	Compress   string // "" = uncompressed
	Limited    string // the image path's limit, "" if none
	TransferMs []float64
	WireBytes  []float64
	ImageBytes []float64
}

// QUICSpan is a migration on a condition's time axis (seconds).
type QUICSpan struct {
	Start, End float64
	OK         bool
}

type quicDef struct {
	name, title, caption string
	draw                 func(conds []QUICCondition, dir string, d quicDef) error
}

var quicDefs = []quicDef{
	{"quic_response_time", "QUIC response time per condition",
		"One panel per condition: the response time of the requests sent in each second (p50, p99 and the maximum over all connections), log scale, with the migrations shaded. A request sent while the server was frozen waits for the restore, so a migration shows as a spike of the maximum in the second that held it; loss on the client's link raises p99 everywhere (QUIC retransmits after its loss detection).", drawQUICResponse},
	{"quic_interruption_cdf", "QUIC interruption CDF",
		"For each condition with migrations, the fraction of migrations whose interruption was at most x. A migration's interruption is the longest silence (no response and no download chunk) on any connection that ended in its window, from the request to the next migration or the end of the condition.", drawQUICCDF},
	{"quic_transfer", "Image transfer time by condition and compression",
		"Mean transfer time of the checkpoint image per condition (bars; dots: each migration), with the bytes that crossed the wire and the image size written above. On the bandwidth-limited image path the transfer time is set by the wire bytes, which is what compression changes.", drawQUICTransfer},
}

// QUICNames lists the QUIC experiment's plots, in order.
func QUICNames() []string {
	out := make([]string, len(quicDefs))
	for i, d := range quicDefs {
		out[i] = d.name
	}
	return out
}

// QUICTitle returns a QUIC plot's title.
func QUICTitle(name string) string {
	for _, d := range quicDefs {
		if d.name == name {
			return d.title
		}
	}
	return name
}

// QUICCaption says how to read a QUIC plot.
func QUICCaption(name string) string {
	for _, d := range quicDefs {
		if d.name == name {
			return d.caption
		}
	}
	return ""
}

// QUIC draws the QUIC experiment's plots into dir and returns the names
// written. A plot that fails does not stop the others.
func QUIC(dir string, conds []QUICCondition) ([]string, error) {
	var names []string
	var errs []error
	for _, d := range quicDefs {
		err := func() (err error) {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("plotting failed: %v", p)
				}
			}()
			return d.draw(conds, dir, d)
		}()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", d.name, err))
			continue
		}
		names = append(names, d.name)
	}
	return names, errors.Join(errs...)
}

var condColors = []color.Color{blue, orange, green, red, purple, sky, grey, black}

func condColor(i int) color.Color { return condColors[i%len(condColors)] }

func drawQUICResponse(conds []QUICCondition, dir string, d quicDef) error {
	if len(conds) == 0 {
		return errors.New("no condition")
	}
	var ps []*plot.Plot
	for i, c := range conds {
		xl := ""
		if i == len(conds)-1 {
			xl = "time since the condition's clients connected (s)"
		}
		title := ""
		if i == 0 {
			title = d.title + " (per second of sending)"
		}
		p := newPlot(title, xl, c.Name+": ms (log)")
		p.Y.Label.TextStyle.Font.Size = vg.Points(9)
		useLog(p)
		var sp []span
		failed := 0
		for _, m := range c.Migrations {
			sp = append(sp, span{start: m.Start, end: m.End, ok: m.OK})
			if !m.OK {
				failed++
			}
		}
		if len(sp) > 0 {
			p.Add(spans{s: sp, minW: vg.Points(3)})
		}
		addSeries(p, "max", c.T, c.Max, grey, 0.9, nil)
		addSeries(p, "p99", c.T, c.P99, red, 1.2, dotted)
		addSeries(p, "p50", c.T, c.P50, blue, 1.6, nil)
		if len(sp) > failed {
			p.Legend.Add(plural(len(sp)-failed, "migration", "migrations")+" (shaded)", swatch{spanFill})
		}
		if len(sp) > 0 {
			if failed > 0 {
				p.Legend.Add(plural(failed, "failed migration", "failed migrations"), swatch{failedFill})
			}
		}
		p.Legend.Left = false
		logHeadroom(p, 2)
		ps = append(ps, p)
	}
	for _, p := range ps {
		fixLog(p)
	}
	h := vg.Length(len(conds))*5.5*vg.Centimeter + 2*vg.Centimeter
	grid := make([][]*plot.Plot, len(ps))
	for i, p := range ps {
		grid[i] = []*plot.Plot{p}
	}
	return save(dir, d.name, wide, h, func(c draw.Canvas) {
		tiles := draw.Tiles{Rows: len(ps), Cols: 1, PadX: vg.Millimeter, PadY: 3 * vg.Millimeter,
			PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 2 * vg.Millimeter}
		cs := plot.Align(grid, tiles, c)
		for i := range ps {
			ps[i].Draw(cs[i][0])
		}
	})
}

func drawQUICCDF(conds []QUICCondition, dir string, d quicDef) error {
	p := newPlot(d.title, "interruption: longest silence on any connection (ms)", "fraction of migrations ≤ x")
	lo, hi := math.Inf(1), math.Inf(-1)
	n := 0
	for i, c := range conds {
		if len(c.InterruptionsMs) == 0 {
			continue
		}
		n++
		l, err := plotter.NewLine(cdfLine(c.InterruptionsMs))
		if err != nil {
			return err
		}
		l.LineStyle = draw.LineStyle{Color: condColor(i), Width: 2}
		p.Add(l)
		ds := metrics.Summarize(c.InterruptionsMs)
		p.Legend.Add(fmt.Sprintf("%s, n=%d: p50 %.0f, p99 %.0f, max %.0f ms", c.Name, ds.N, ds.P50, ds.P99, ds.Max), l)
		lo, hi = math.Min(lo, ds.Min), math.Max(hi, ds.Max)
	}
	if n == 0 {
		noData(p, "no migration")
		return single(dir, quicAsDef(d), p, 20*vg.Centimeter, 12*vg.Centimeter)
	}
	if lo > 0 && hi/lo > 10 {
		// A limited image path's seconds next to a clean path's few
		// hundred milliseconds: on a linear axis the clean curves merge.
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = logTicks{}
		p.X.Label.Text += ", log scale"
		p.X.Min, p.X.Max = lo/1.3, hi*1.3
	} else {
		pad := math.Max((hi-lo)*0.1, 5)
		p.X.Min, p.X.Max = math.Max(0, lo-pad), hi+pad
	}
	p.Y.Min, p.Y.Max = 0, 1+0.08*float64(n+1) // room for the legend
	p.Y.Tick.Marker = fixedTicks{0, 0.25, 0.5, 0.75, 1}
	return single(dir, quicAsDef(d), p, 20*vg.Centimeter, 12*vg.Centimeter)
}

func drawQUICTransfer(conds []QUICCondition, dir string, d quicDef) error {
	p := newPlot(d.title, "", "transfer time (ms)")
	var names []string
	var pts plotter.XYs
	var labels []string
	top := 0.0
	for _, c := range conds {
		if len(c.TransferMs) == 0 {
			continue
		}
		i := float64(len(names))
		comp := c.Compress
		if comp == "" {
			comp = "uncompressed"
		}
		name := c.Name + "\n" + comp
		if c.Limited != "" {
			name += ", " + c.Limited
		}
		names = append(names, name)
		m := metrics.MeanSDSummary(c.TransferMs)
		bar, err := plotter.NewBarChart(plotter.Values{m.Mean}, vg.Points(28))
		if err != nil {
			return err
		}
		bar.Color = sky
		if c.Compress != "" {
			bar.Color = green
		}
		bar.LineStyle.Width = 0
		bar.XMin = i
		p.Add(bar)
		var dots plotter.XYs
		for _, v := range c.TransferMs {
			dots = append(dots, plotter.XY{X: i, Y: v})
			top = math.Max(top, v)
		}
		s, err := plotter.NewScatter(dots)
		if err != nil {
			return err
		}
		s.GlyphStyle = draw.GlyphStyle{Color: black, Radius: vg.Points(2), Shape: draw.CircleGlyph{}}
		p.Add(s)
		top = math.Max(top, m.Mean)
		wire, img := metrics.MeanSDSummary(c.WireBytes).Mean, metrics.MeanSDSummary(c.ImageBytes).Mean
		lab := fmt.Sprintf("%.0f ms\nwire %.1f MB", m.Mean, wire/1e6)
		if img > 0 {
			lab += fmt.Sprintf("\nimage %.1f MB", img/1e6)
		}
		pts = append(pts, plotter.XY{X: i, Y: math.Max(m.Mean, maxOf(c.TransferMs))})
		labels = append(labels, lab)
	}
	if len(names) == 0 {
		noData(p, "no successful migration")
		return single(dir, quicAsDef(d), p, 20*vg.Centimeter, 11*vg.Centimeter)
	}
	lab, err := plotter.NewLabels(plotter.XYLabels{XYs: pts, Labels: labels})
	if err != nil {
		return err
	}
	for i := range lab.TextStyle {
		lab.TextStyle[i].XAlign = draw.XCenter
		lab.TextStyle[i].YAlign = draw.YBottom
		lab.TextStyle[i].Font.Size = vg.Points(8)
	}
	lab.Offset = vg.Point{Y: vg.Points(3)}
	p.Add(lab)
	p.NominalX(names...)
	p.X.Tick.Label.Font.Size = vg.Points(8)
	p.X.Min, p.X.Max = -0.6, float64(len(names))-0.4
	p.Y.Min, p.Y.Max = 0, math.Max(top*1.3, 1)
	p.Legend.Add("uncompressed", swatch{sky})
	p.Legend.Add("zstd", swatch{green})
	p.Legend.Add("each migration", quicDot{})
	p.Legend.Left = true
	w := math.Max(20, 4.5*float64(len(names)))
	return single(dir, quicAsDef(d), p, vg.Length(w)*vg.Centimeter, 11*vg.Centimeter)
}

type quicDot struct{}

func (quicDot) Thumbnail(c *draw.Canvas) {
	mid := vg.Point{X: (c.Min.X + c.Max.X) / 2, Y: (c.Min.Y + c.Max.Y) / 2}
	c.DrawGlyph(draw.GlyphStyle{Color: black, Radius: vg.Points(2), Shape: draw.CircleGlyph{}}, mid)
}

func maxOf(xs []float64) float64 {
	m := math.Inf(-1)
	for _, x := range xs {
		m = math.Max(m, x)
	}
	return m
}

// quicAsDef lets the QUIC plots use single, which only needs the name.
func quicAsDef(d quicDef) def { return def{name: d.name, title: d.title, caption: d.caption} }
