package metrics

import (
	"encoding/json"
	"math"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// Expected values computed by hand (and matching numpy.percentile's
// default "linear" method).
func TestPercentile(t *testing.T) {
	xs := []float64{15, 20, 35, 40, 50}
	for _, c := range []struct{ p, want float64 }{
		{0, 15}, {100, 50}, {50, 35}, {25, 20}, {40, 29}, {95, 48}, {99, 49.6},
	} {
		if got := Percentile(xs, c.p); !near(got, c.want) {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if !math.IsNaN(Percentile(nil, 50)) {
		t.Error("percentile of nothing must be NaN")
	}
	if got := Percentile([]float64{7}, 99); got != 7 {
		t.Errorf("single sample: %v", got)
	}
}

func TestMeanSDAndJitter(t *testing.T) {
	m, sd := MeanSD([]float64{2, 4, 4, 4, 5, 5, 7, 9})
	// mean 5; sum of squares 32; sample sd sqrt(32/7)
	if !near(m, 5) || !near(sd, math.Sqrt(32.0/7)) {
		t.Errorf("mean %v sd %v", m, sd)
	}
	// |3-1| + |2-3| + |6-2| = 7 over 3 differences
	if j := Jitter([]float64{1, 3, 2, 6}); !near(j, 7.0/3) {
		t.Errorf("jitter %v", j)
	}
	d := Summarize([]float64{3, 1, 2})
	if d.N != 3 || d.Min != 1 || d.Max != 3 || d.P50 != 2 || !near(d.Mean, 2) || !near(d.SD, 1) {
		t.Errorf("summary %+v", d)
	}
}

// A missing value travels as JSON null and comes back missing.
func TestOptJSON(t *testing.T) {
	type v struct {
		A Opt `json:"a"`
		B Opt `json:"b"`
	}
	b, err := json.Marshal(v{A: 1.25, B: None()})
	if err != nil || string(b) != `{"a":1.25,"b":null}` {
		t.Fatalf("%s %v", b, err)
	}
	var back v
	if err := json.Unmarshal(b, &back); err != nil || back.A != 1.25 || back.B.Valid() {
		t.Fatalf("%+v %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"a":"x"}`), &back); err == nil {
		t.Fatal("a string was read as a number")
	}
	if OptOf(nil, 50).Valid() || OptOf([]float64{1, 3}, 50) != 2 {
		t.Fatal("OptOf")
	}
}
