// Package metrics computes the summary statistics the project reports:
// percentiles by linear interpolation between closest ranks (the seed's
// method, same as numpy's default), mean and sample standard deviation,
// and jitter as the mean absolute difference of consecutive samples.
package metrics

import (
	"fmt"
	"math"
	"sort"
	"strconv"
)

// Percentile returns the p-th percentile (0..100) of xs by linear
// interpolation; xs need not be sorted. NaN for no samples.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return sortedPercentile(s, p)
}

func sortedPercentile(s []float64, p float64) float64 {
	if p <= 0 {
		return s[0]
	}
	if p >= 100 {
		return s[len(s)-1]
	}
	rank := p / 100 * float64(len(s)-1)
	lo := int(math.Floor(rank))
	frac := rank - float64(lo)
	if lo+1 >= len(s) {
		return s[lo]
	}
	return s[lo] + frac*(s[lo+1]-s[lo])
}

// MeanSD returns the mean and the sample standard deviation (n-1).
func MeanSD(xs []float64) (mean, sd float64) {
	if len(xs) == 0 {
		return math.NaN(), math.NaN()
	}
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	if len(xs) < 2 {
		return mean, 0
	}
	for _, x := range xs {
		sd += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(sd / float64(len(xs)-1))
}

// Jitter is the mean absolute difference between consecutive samples.
func Jitter(xs []float64) float64 {
	if len(xs) < 2 {
		return 0
	}
	var sum float64
	for i := 1; i < len(xs); i++ {
		sum += math.Abs(xs[i] - xs[i-1])
	}
	return sum / float64(len(xs)-1)
}

// Dist summarises a distribution.
type Dist struct {
	N    int     `json:"n"`
	Min  float64 `json:"min"`
	P50  float64 `json:"p50"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
	SD   float64 `json:"sd"`
}

// Summarize computes a Dist. An empty input gives N=0 and zeros (JSON has
// no NaN).
func Summarize(xs []float64) Dist {
	if len(xs) == 0 {
		return Dist{}
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	m, sd := MeanSD(s)
	return Dist{N: len(s), Min: s[0], P50: sortedPercentile(s, 50), P95: sortedPercentile(s, 95),
		P99: sortedPercentile(s, 99), Max: s[len(s)-1], Mean: m, SD: sd}
}

// MeanSDOf is the {mean, sd} pair the reports use for phases.
type MeanSDOf struct {
	Mean float64 `json:"mean"`
	SD   float64 `json:"sd"`
}

// MeanSDSummary computes MeanSDOf; zeros for no samples.
func MeanSDSummary(xs []float64) MeanSDOf {
	if len(xs) == 0 {
		return MeanSDOf{}
	}
	m, sd := MeanSD(xs)
	return MeanSDOf{m, sd}
}

// Opt is a float64 that may be missing (NaN). It marshals a missing value
// as JSON null and reads null back as NaN, so "no sample in this
// interval" stays distinguishable from zero all the way into a CSV cell.
type Opt float64

// None is the missing value.
func None() Opt { return Opt(math.NaN()) }

// Valid reports whether o holds a value.
func (o Opt) Valid() bool { return !math.IsNaN(float64(o)) }

// MarshalJSON writes null for a missing value.
func (o Opt) MarshalJSON() ([]byte, error) {
	if !o.Valid() || math.IsInf(float64(o), 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, float64(o), 'f', -1, 64), nil
}

// UnmarshalJSON reads a number or null.
func (o *Opt) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*o = None()
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("metrics: %q is not a number: %w", b, err)
	}
	*o = Opt(f)
	return nil
}

// OptOf returns Percentile(xs, p) as an Opt: missing for no samples.
func OptOf(xs []float64, p float64) Opt { return Opt(Percentile(xs, p)) }
