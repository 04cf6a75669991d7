package loadgen

import (
	"math"
	"testing"
	"time"
)

func TestSeqCheck(t *testing.T) {
	var s SeqCheck
	for _, q := range []int64{0, 1, 2, 4, 5, 3, 5, 8} {
		s.See(q)
	}
	// 3 late (reordered, not lost), 5 duplicated, 6 and 7 lost.
	if s.Received != 8 || s.Lost != 2 || s.Reordered != 1 || s.Duplicated != 1 || s.Next != 9 {
		t.Fatalf("got %+v", s)
	}
	// A late arrival of a lost frame turns it into a reordered one.
	s.See(6)
	if s.Lost != 1 || s.Reordered != 2 {
		t.Fatalf("after late 6: %+v", s)
	}
	// Totals across sessions (a reconnect starts again at 0).
	tot := SeqTotals{}.Add(&s)
	var s2 SeqCheck
	s2.See(0)
	s2.See(2)
	tot = tot.Add(&s2)
	if tot.Received != 11 || tot.Lost != 2 || tot.Duplicated != 1 || tot.Reordered != 2 {
		t.Fatalf("totals %+v", tot)
	}
}

func TestSeqCheckInOrder(t *testing.T) {
	var s SeqCheck
	for q := int64(0); q < 1000; q++ {
		s.See(q)
	}
	if s.Lost+s.Duplicated+s.Reordered != 0 || s.Received != 1000 {
		t.Fatalf("%+v", s)
	}
}

// Hand-computed: RTTs 1, 3, 2, 6 and one over the 1000 ms cap.
func TestRTTWindow(t *testing.T) {
	var a, b rttWindow
	for _, r := range []float64{1, 3, 2000, 2, 6} {
		a.add(r, 1000)
	}
	b.add(10, 1000)
	var agg rttAgg
	agg.merge(&a)
	agg.merge(&b)
	var m Metrics
	agg.fill(&m)
	// capped samples: 1 3 2 6 10 -> sorted 1 2 3 6 10
	near := func(x float64, want float64) bool { return math.Abs(x-want) < 1e-9 }
	if !near(float64(m.P50RttMs), 3) || !near(float64(m.P95RttMs), 9.2) || !near(float64(m.MaxRttMs), 10) || !near(float64(m.AvgRttMs), 4.4) {
		t.Fatalf("percentiles %+v", m)
	}
	// jitter: |3-1| + |2-3| + |6-2| = 7 over 3 (b has one sample: none)
	if !near(float64(m.JitterMs), 7.0/3) {
		t.Fatalf("jitter %v", m.JitterMs)
	}
	if m.RTTOverCap != 1 || !near(float64(m.UncappedMaxRttMs), 2000) || m.RTTSamples != 5 {
		t.Fatalf("uncapped %+v", m)
	}
	// After a reset the window is empty but jitter continues from the
	// last sample, as in the seed.
	a.reset()
	a.add(4, 1000)
	if a.jitterN != 1 || a.jitterSum != 2 || len(a.capped) != 1 {
		t.Fatalf("after reset %+v", a)
	}
	var empty rttAgg
	var m2 Metrics
	empty.fill(&m2)
	if m2.P50RttMs.Valid() || m2.JitterMs.Valid() {
		t.Fatalf("no samples must give missing values: %+v", m2)
	}
}

func TestMaxGapEndingIn(t *testing.T) {
	t0 := time.Unix(1000, 0)
	g := func(end time.Duration, ms float64) Gap { return Gap{EndUnixNs: t0.Add(end).UnixNano(), Ms: ms} }
	r := Report{Connections: []ConnReport{
		{Gaps: []Gap{g(time.Second, 300), g(5*time.Second, 800)}},
		{Gaps: []Gap{g(1100*time.Millisecond, 350)}},
	}}
	if ms, ok := r.MaxGapEndingIn(t0, t0.Add(2*time.Second)); !ok || ms != 350 {
		t.Errorf("window 1: %v %v", ms, ok)
	}
	// The 800 ms gap started at 4.2 s but ended at 5 s: it belongs to a
	// window holding its end, not to one it merely overlaps.
	if ms, ok := r.MaxGapEndingIn(t0.Add(4*time.Second), t0.Add(5*time.Second)); !ok || ms != 800 {
		t.Errorf("window 2: %v %v", ms, ok)
	}
	if _, ok := r.MaxGapEndingIn(t0.Add(4*time.Second), t0.Add(4300*time.Millisecond)); ok {
		t.Error("a gap still open at the window's end is not in it")
	}
	if _, ok := r.MaxGapEndingIn(t0.Add(6*time.Second), t0.Add(7*time.Second)); ok {
		t.Error("window 3 has no gap")
	}
}
