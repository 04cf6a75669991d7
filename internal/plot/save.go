package plot

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgpdf"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Formats are the files written for every plot.
var Formats = []string{"png", "svg", "pdf"}

// pngDPI makes PNGs sharp enough to read in a rendered Markdown report.
const pngDPI = 150

// save renders draw into dir/name.{png,svg,pdf}.
func save(dir, name string, w, h vg.Length, render func(draw.Canvas)) error {
	for _, f := range Formats {
		var c interface {
			vg.CanvasSizer
			io.WriterTo
		}
		switch f {
		case "png":
			c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(pngDPI))}
		case "svg":
			c = vgsvg.New(w, h)
		case "pdf":
			c = vgpdf.New(w, h)
		}
		render(draw.New(c))
		path := filepath.Join(dir, name+"."+f)
		out, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("plot %s: %w", name, err)
		}
		if _, err := c.WriteTo(out); err != nil {
			out.Close()
			return fmt.Errorf("plot %s: write %s: %w", name, path, err)
		}
		if err := out.Close(); err != nil {
			return fmt.Errorf("plot %s: %w", name, err)
		}
	}
	return nil
}
