package loadgen

import (
	"math"
	"time"

	"github.com/containerflow/containerflow/internal/metrics"
)

// rttWindow holds one connection's RTT samples since the last scrape.
type rttWindow struct {
	capped    []float64 // the seed's samples: RTT below the cap
	uncapped  []float64 // every sample
	overCap   uint64
	jitterSum float64 // sum of |RTT_n - RTT_n-1| over capped samples
	jitterN   int
	last      float64 // last capped sample, kept across scrapes as the seed does
	maxGap    time.Duration
	frames    uint64
}

// add accounts one RTT (ms); samples at or above capMs are left out of the
// seed's figures (they are echoes that waited out a freeze) but counted.
func (w *rttWindow) add(rtt, capMs float64) {
	w.uncapped = append(w.uncapped, rtt)
	if rtt < 0 || rtt >= capMs {
		w.overCap++
		return
	}
	if w.last > 0 {
		w.jitterSum += math.Abs(rtt - w.last)
		w.jitterN++
	}
	w.last = rtt
	w.capped = append(w.capped, rtt)
}

// reset starts a new interval, keeping the last sample for jitter.
func (w *rttWindow) reset() {
	*w = rttWindow{last: w.last, capped: w.capped[:0], uncapped: w.uncapped[:0]}
}

// rttAgg merges the windows of all connections into the seed's figures.
type rttAgg struct {
	capped, uncapped []float64
	jitterSum        float64
	jitterN          int
	overCap          uint64
}

func (a *rttAgg) merge(w *rttWindow) {
	a.capped = append(a.capped, w.capped...)
	a.uncapped = append(a.uncapped, w.uncapped...)
	a.jitterSum += w.jitterSum
	a.jitterN += w.jitterN
	a.overCap += w.overCap
}

func (a *rttAgg) fill(m *Metrics) {
	none := metrics.None()
	m.AvgRttMs, m.P50RttMs, m.P95RttMs, m.P99RttMs, m.MaxRttMs, m.JitterMs = none, none, none, none, none, none
	m.UncappedP99RttMs, m.UncappedMaxRttMs = none, none
	m.RTTSamples, m.RTTOverCap = len(a.capped), a.overCap
	if len(a.capped) > 0 {
		mean, _ := metrics.MeanSD(a.capped)
		m.AvgRttMs = metrics.Opt(mean)
		m.P50RttMs = metrics.OptOf(a.capped, 50)
		m.P95RttMs = metrics.OptOf(a.capped, 95)
		m.P99RttMs = metrics.OptOf(a.capped, 99)
		m.MaxRttMs = metrics.OptOf(a.capped, 100)
	}
	if a.jitterN > 0 {
		m.JitterMs = metrics.Opt(a.jitterSum / float64(a.jitterN))
	}
	if len(a.uncapped) > 0 {
		m.UncappedP99RttMs = metrics.OptOf(a.uncapped, 99)
		m.UncappedMaxRttMs = metrics.OptOf(a.uncapped, 100)
	}
}
