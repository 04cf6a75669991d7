package plot

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// The QUIC plots from synthetic conditions: one without migrations, one
// with, one compressed on a limited path, and one whose seconds all lack
// responses; every file must be written and valid.
func TestQUICPlots(t *testing.T) {
	mk := func(name string, migr int, compress, limited string) QUICCondition {
		c := QUICCondition{Name: name, Compress: compress, Limited: limited}
		for s := 0; s < 20; s++ {
			c.T = append(c.T, float64(s)+0.5)
			c.P50 = append(c.P50, 0.4+0.01*float64(s%3))
			c.P99 = append(c.P99, 2)
			c.Max = append(c.Max, 5)
		}
		for i := 0; i < migr; i++ {
			st := 3 + 4*float64(i)
			c.Migrations = append(c.Migrations, QUICSpan{Start: st, End: st + 0.3, OK: i != 1})
			c.Max[int(st)] = 300
			if i != 1 {
				iv := 100 + 20*float64(i)
				if limited != "" {
					iv *= 40 // seconds on the limited path: the CDF goes log
				}
				c.InterruptionsMs = append(c.InterruptionsMs, iv)
				c.TransferMs = append(c.TransferMs, 50+float64(i))
				c.WireBytes = append(c.WireBytes, 2e7)
				c.ImageBytes = append(c.ImageBytes, 2.2e7)
			}
		}
		return c
	}
	empty := QUICCondition{Name: "empty", T: []float64{0.5, 1.5}, P50: []float64{math.NaN(), math.NaN()}, P99: []float64{math.NaN(), math.NaN()}, Max: []float64{math.NaN(), math.NaN()}}
	dir := t.TempDir()
	names, err := QUIC(dir, []QUICCondition{mk("baseline", 0, "", ""), mk("clean", 4, "", ""), mk("bw-zstd", 3, "zstd", "50mbit"), empty})
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != len(QUICNames()) {
		t.Fatalf("plots %v", names)
	}
	for _, n := range names {
		for f, magic := range map[string]string{"png": "\x89PNG\r\n\x1a\n", "pdf": "%PDF-", "svg": "<?xml"} {
			b, err := os.ReadFile(filepath.Join(dir, n+"."+f))
			if err != nil || !bytes.HasPrefix(b, []byte(magic)) {
				t.Errorf("%s.%s: %v", n, f, err)
			}
		}
	}
	// No condition migrated: the CDF and the transfer bars say so instead of failing.
	if _, err := QUIC(t.TempDir(), []QUICCondition{mk("baseline", 0, "", "")}); err != nil {
		t.Fatal(err)
	}
}
