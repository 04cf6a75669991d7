package placebench

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/containerflow/containerflow/internal/placement"
)

// Options of a run.
type Options struct {
	Hosts      int
	Containers int
	Seed       uint64
	// Fill is how full the hidden assignment makes every host (0.8).
	Fill float64
	// Hot is the fraction of hosts made hot for the rebalance (0.1).
	Hot float64
	// Threshold of the rebalance (0: the planner's default, 1.1).
	Threshold float64
	// Repeat: each timed call runs this many times; the median is kept
	// (the plan must be the same every time).
	Repeat int
}

// Phase is one timed planner call.
type Phase struct {
	Name string `json:"name"`
	// Ms is the median wall time of Repeat calls; MinMs, MaxMs the range.
	Ms    float64 `json:"ms"`
	MinMs float64 `json:"min_ms"`
	MaxMs float64 `json:"max_ms"`
	// Violations: steps of the plan, executed in order here independently
	// of the planner, that put a host over capacity or were not runnable.
	Violations      int     `json:"violations"`
	ImbalanceBefore float64 `json:"imbalance_before"`
	ImbalanceAfter  float64 `json:"imbalance_after"`
	Moves           int     `json:"moves"`
	Unplaced        int     `json:"unplaced"`
	Reached         bool    `json:"reached"`
	Minimal         bool    `json:"minimal,omitempty"`
	Detail          string  `json:"detail,omitempty"`
	// Deterministic: every repeat gave the same plan.
	Deterministic bool `json:"deterministic"`
}

// Result is a whole run.
type Result struct {
	Hosts      int             `json:"hosts"`
	Containers int             `json:"containers"`
	Seed       uint64          `json:"seed"`
	Fill       float64         `json:"fill"`
	Repeat     int             `json:"repeat"`
	Phases     []Phase         `json:"phases"`
	PlaceStats placement.Stats `json:"place_stats"`
	HotHosts   int             `json:"hot_hosts"`
	SkewMoves  int             `json:"skew_moves"`
	Started    time.Time       `json:"started"`
	Threshold  float64         `json:"threshold"`
	// Feasible: a placement of every container within capacity exists
	// (the generator's own), so PlaceAll must leave none out.
	Feasible  bool   `json:"feasible"`
	GoVersion string `json:"go_version"`
	NumCPU    int    `json:"num_cpu"`
}

// Failures lists what makes the run fail: a plan that broke capacity or
// differed between repeats, or PlaceAll leaving out a container of a
// feasible input.
func (r *Result) Failures() []string {
	var out []string
	for _, p := range r.Phases {
		if p.Violations > 0 {
			out = append(out, fmt.Sprintf("%s: %d steps over capacity or not runnable", p.Name, p.Violations))
		}
		if !p.Deterministic {
			out = append(out, p.Name+": the plan differed between runs")
		}
	}
	if r.Feasible && len(r.Phases) > 0 && r.Phases[0].Unplaced > 0 {
		out = append(out, fmt.Sprintf("%s: %d containers left out, though a placement of all of them exists", r.Phases[0].Name, r.Phases[0].Unplaced))
	}
	return out
}

// Run generates the input, then times PlaceAll on it, a Rebalance after
// making some hosts hot, and the evacuation of the busiest host.
func Run(o Options) (*Result, error) {
	if o.Fill == 0 {
		o.Fill = 0.8
	}
	if o.Hot == 0 {
		o.Hot = 0.1
	}
	if o.Repeat < 1 {
		o.Repeat = 1
	}
	if o.Threshold == 0 {
		o.Threshold = placement.DefaultThreshold
	}
	if o.Hosts < 2 {
		return nil, fmt.Errorf("--hosts %d: at least 2 (one is evacuated)", o.Hosts)
	}
	if !(o.Hot > 0 && o.Hot < 1) {
		return nil, fmt.Errorf("--hot %v: a fraction of the hosts, in (0, 1)", o.Hot)
	}
	hosts, cs, err := Generate(o.Hosts, o.Containers, o.Fill, o.Seed)
	if err != nil {
		return nil, err
	}
	res := &Result{Hosts: o.Hosts, Containers: len(cs), Seed: o.Seed, Fill: o.Fill, Repeat: o.Repeat,
		Started: time.Now().UTC(), Threshold: o.Threshold, Feasible: true,
		GoVersion: runtime.Version(), NumCPU: runtime.NumCPU()}

	var stats placement.Stats
	ph, plan, err := timed("place all", o.Repeat, hosts, cs, func() (placement.Plan, error) {
		p, s, err := placement.PlaceAllStats(hosts, cs)
		stats = s
		return p, err
	})
	if fatal(err) {
		return nil, err
	}
	res.PlaceStats = stats
	ph.Detail = fmt.Sprintf("greedy: %d hosts over capacity, imbalance %.3f; tabu %d steps; balance %d steps",
		stats.GreedyViolations, stats.GreedyImbalance, stats.TabuSteps, stats.BalanceSteps)
	res.Phases = append(res.Phases, ph)
	placed := execute(cs, plan)

	skewed, hot, skewMoves := skew(hosts, placed, o.Hot, o.Seed)
	res.HotHosts, res.SkewMoves = hot, skewMoves
	ph, _, err = timed("rebalance", o.Repeat, hosts, skewed, func() (placement.Plan, error) {
		return placement.Rebalance(hosts, skewed, placement.Options{Threshold: o.Threshold})
	})
	if fatal(err) {
		return nil, err
	}
	ph.Detail = fmt.Sprintf("%d hot hosts filled by %d moves first; threshold %.2f", hot, skewMoves, o.Threshold)
	res.Phases = append(res.Phases, ph)

	busiest := busiestHost(hosts, placed)
	ph, _, err = timed("evacuate", o.Repeat, hosts, placed, func() (placement.Plan, error) {
		return placement.Evacuate(hosts, placed, busiest)
	})
	if fatal(err) {
		return nil, err
	}
	ph.Detail = "host " + busiest + " (most containers)"
	res.Phases = append(res.Phases, ph)
	return res, nil
}

// fatal: containers that fit nowhere are a figure of the run (Unplaced),
// anything else stops it.
func fatal(err error) bool {
	var u *placement.UnplacedError
	return err != nil && !errors.As(err, &u)
}

// timed runs call repeat times and checks the plan it gives.
func timed(name string, repeat int, hosts []placement.Host, cs []placement.Container, call func() (placement.Plan, error)) (Phase, placement.Plan, error) {
	ph := Phase{Name: name, Deterministic: true}
	var ms []float64
	var first placement.Plan
	var firstErr error
	for r := 0; r < repeat; r++ {
		t0 := time.Now()
		p, err := call()
		ms = append(ms, float64(time.Since(t0).Microseconds())/1000)
		if r == 0 {
			first, firstErr = p, err
		} else if !samePlan(first, p) {
			ph.Deterministic = false
		}
	}
	slices.Sort(ms)
	ph.Ms, ph.MinMs, ph.MaxMs = ms[len(ms)/2], ms[0], ms[len(ms)-1]
	ph.Violations = Violations(hosts, cs, first)
	ph.ImbalanceBefore, ph.ImbalanceAfter = first.ImbalanceBefore, first.ImbalanceAfter
	ph.Moves, ph.Unplaced, ph.Reached, ph.Minimal = len(first.Moves), len(first.Unplaced), first.Reached, first.Minimal
	return ph, first, firstErr
}

func samePlan(a, b placement.Plan) bool {
	return slices.Equal(a.Moves, b.Moves) && a.ImbalanceAfter == b.ImbalanceAfter && len(a.Unplaced) == len(b.Unplaced)
}
