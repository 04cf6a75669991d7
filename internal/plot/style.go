package plot

import (
	"image/color"
	"math"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Colours: a colour-blind-safe palette (Okabe-Ito) for series, and fixed
// colours for phases so they mean the same thing on every plot.
var (
	blue   = color.RGBA{0, 114, 178, 255}
	orange = color.RGBA{230, 159, 0, 255}
	green  = color.RGBA{0, 158, 115, 255}
	red    = color.RGBA{213, 94, 0, 255}
	purple = color.RGBA{204, 121, 167, 255}
	sky    = color.RGBA{86, 180, 233, 255}
	grey   = color.RGBA{120, 120, 120, 255}
	black  = color.RGBA{0, 0, 0, 255}

	// Non-premultiplied: the fills are translucent over the data.
	spanFill   = color.NRGBA{213, 94, 0, 50}
	failedFill = color.NRGBA{60, 60, 60, 70}
)

// phaseColor keeps a phase's colour the same on every plot.
var phaseColor = map[string]color.Color{
	"checkpoint": green, "transfer": sky, "restore": orange, "switch": purple, "resume": blue, "other": grey,
}

const (
	wide   = 24 * vg.Centimeter
	tall   = 10 * vg.Centimeter
	square = 15 * vg.Centimeter
)

func newPlot(title, xLabel, yLabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(13)
	p.X.Label.Text = xLabel
	p.Y.Label.Text = yLabel
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.TextStyle.Font.Size = vg.Points(9)
	p.X.Tick.Marker = niceTicks{}
	p.Y.Tick.Marker = niceTicks{}
	grid := plotter.NewGrid()
	grid.Vertical.Color = color.Gray{225}
	grid.Horizontal.Color = color.Gray{225}
	p.Add(grid)
	return p
}

// addSeries adds ys over xs as a line broken at missing values (NaN),
// with one legend entry; a lone point between gaps is drawn as a dot so
// it does not vanish.
func addSeries(p *plot.Plot, label string, xs, ys []float64, c color.Color, width vg.Length, dashes []vg.Length) {
	style := draw.LineStyle{Color: c, Width: width, Dashes: dashes}
	var seg plotter.XYs
	var legend plot.Thumbnailer
	flush := func() {
		switch len(seg) {
		case 0:
		case 1:
			s, _ := plotter.NewScatter(seg)
			s.GlyphStyle = draw.GlyphStyle{Color: c, Radius: width, Shape: draw.CircleGlyph{}}
			p.Add(s)
		default:
			l, _ := plotter.NewLine(seg)
			l.LineStyle = style
			p.Add(l)
			legend = l
		}
		seg = nil
	}
	for i := range xs {
		if i >= len(ys) || math.IsNaN(ys[i]) || math.IsInf(ys[i], 0) || (p.Y.Scale == logScale && ys[i] <= 0) {
			flush()
			continue
		}
		seg = append(seg, plotter.XY{X: xs[i], Y: ys[i]})
	}
	flush()
	if label != "" {
		if legend == nil {
			l := &plotter.Line{LineStyle: style}
			legend = l
		}
		p.Legend.Add(label, legend)
	}
}

var logScale plot.Normalizer = plot.LogScale{}

// useLog puts the y axis on a log scale with readable ticks.
func useLog(p *plot.Plot) {
	p.Y.Scale = logScale
	p.Y.Tick.Marker = logTicks{}
}

// spans shades the migrations over the full height of the data area.
type spans struct {
	s []span
	// minW keeps a span visible when it is much shorter than the plot's
	// time range (a 0.4 s migration on a 30-minute run).
	minW vg.Length
}

func (sp spans) Plot(c draw.Canvas, p *plot.Plot) {
	trX, _ := p.Transforms(&c)
	for _, s := range sp.s {
		x0, x1 := trX(s.start), trX(s.end)
		if x1-x0 < sp.minW {
			mid := (x0 + x1) / 2
			x0, x1 = mid-sp.minW/2, mid+sp.minW/2
		}
		x0, x1 = max(x0, c.Min.X), min(x1, c.Max.X)
		if x1 <= x0 {
			continue
		}
		fill := spanFill
		if !s.ok {
			fill = failedFill
		}
		c.FillPolygon(fill, []vg.Point{{X: x0, Y: c.Min.Y}, {X: x1, Y: c.Min.Y}, {X: x1, Y: c.Max.Y}, {X: x0, Y: c.Max.Y}})
	}
}

// DataRange makes the x axis cover every migration.
func (sp spans) DataRange() (xmin, xmax, ymin, ymax float64) {
	xmin, xmax = math.Inf(1), math.Inf(-1)
	for _, s := range sp.s {
		xmin, xmax = min(xmin, s.start), max(xmax, s.end)
	}
	return xmin, xmax, math.Inf(1), math.Inf(-1) // no say in the y range
}

type swatch struct{ c color.Color }

func (s swatch) Thumbnail(c *draw.Canvas) {
	c.FillPolygon(s.c, []vg.Point{c.Min, {X: c.Max.X, Y: c.Min.Y}, c.Max, {X: c.Min.X, Y: c.Max.Y}})
}

// addSpans shades migrations and adds a legend entry for them.
func addSpans(p *plot.Plot, r *run) {
	if len(r.spans) == 0 {
		return
	}
	p.Add(spans{s: r.spans, minW: vg.Points(3)})
	failed := 0
	for _, s := range r.spans {
		if !s.ok {
			failed++
		}
	}
	p.Legend.Add(plural(len(r.spans)-failed, "migration", "migrations")+" (shaded)", swatch{spanFill})
	if failed > 0 {
		p.Legend.Add(plural(failed, "failed migration", "failed migrations"), swatch{failedFill})
	}
}

// vline is a vertical line over the full height at X.
type vline struct {
	X     float64
	Style draw.LineStyle
}

func (v vline) Plot(c draw.Canvas, p *plot.Plot) {
	trX, _ := p.Transforms(&c)
	x := trX(v.X)
	if x < c.Min.X || x > c.Max.X {
		return
	}
	c.StrokeLine2(v.Style, x, c.Min.Y, x, c.Max.Y)
}

func (v vline) Thumbnail(c *draw.Canvas) {
	y := (c.Min.Y + c.Max.Y) / 2
	c.StrokeLine2(v.Style, c.Min.X, y, c.Max.X, y)
}

// band fills between lo and hi (NaN-free points only).
func band(xs, lo, hi []float64, c color.Color) *plotter.Polygon {
	var pts plotter.XYs
	for i := range xs {
		if !math.IsNaN(lo[i]) && !math.IsNaN(hi[i]) {
			pts = append(pts, plotter.XY{X: xs[i], Y: lo[i]})
		}
	}
	for i := len(xs) - 1; i >= 0; i-- {
		if !math.IsNaN(lo[i]) && !math.IsNaN(hi[i]) {
			pts = append(pts, plotter.XY{X: xs[i], Y: hi[i]})
		}
	}
	if len(pts) < 3 {
		return nil
	}
	poly, err := plotter.NewPolygon(pts)
	if err != nil {
		return nil
	}
	poly.Color = c
	poly.LineStyle.Width = 0
	return poly
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return itoa(n) + " " + many
}

// niceTicks puts about eight major ticks at 1, 2 or 5 times a power of
// ten, labelled without needless decimals (gonum's default gives two or
// three ticks with two decimals, too few to read a time axis).
type niceTicks struct{ n int }

func (t niceTicks) Ticks(lo, hi float64) []plot.Tick {
	n := t.n
	if n == 0 {
		n = 8
	}
	if !(hi > lo) {
		return plot.DefaultTicks{}.Ticks(lo, hi)
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	prec := 0
	if step < 1 {
		prec = int(math.Ceil(-math.Log10(step)))
	}
	var ticks []plot.Tick
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
		ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v+0, 'f', prec, 64)})
		// Minor ticks halfway.
		if mv := v + step/2; mv <= hi {
			ticks = append(ticks, plot.Tick{Value: mv})
		}
	}
	for i := range ticks {
		if ticks[i].Label == "-0" {
			ticks[i].Label = "0"
		}
	}
	return ticks
}

// fixedTicks labels exactly the given values.
type fixedTicks []float64

func (f fixedTicks) Ticks(lo, hi float64) []plot.Tick {
	var out []plot.Tick
	for _, v := range f {
		if v >= lo && v <= hi {
			out = append(out, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', -1, 64)})
		}
	}
	return out
}

// logTicks labels 1, 2 and 5 times each power of ten when the axis spans
// few decades (gonum's LogTicks then labels one value or none), and only
// the powers of ten when it spans many.
type logTicks struct{}

func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(lo > 0) || !(hi > lo) {
		return nil
	}
	k0, k1 := int(math.Floor(math.Log10(lo))), int(math.Ceil(math.Log10(hi)))
	labelled := map[int]bool{1: true, 2: true, 5: true}
	if k1-k0 > 3 {
		labelled = map[int]bool{1: true}
	}
	var out []plot.Tick
	for k := k0; k <= k1; k++ {
		for m := 1; m <= 9; m++ {
			v := float64(m) * math.Pow(10, float64(k))
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if labelled[m] {
				t.Label = strconv.FormatFloat(v, 'g', -1, 64)
			}
			out = append(out, t)
		}
	}
	return out
}
