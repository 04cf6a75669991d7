package placement

import (
	"fmt"
	"math"
	"slices"
)

// Rebalance plans moves that bring the imbalance of the schedulable hosts
// to opts.Threshold or under with as few moves as it can find. Only
// containers on schedulable hosts move, only to schedulable hosts, each at
// most once, and no step puts its destination over capacity (executed in
// order). Containers with Host "" and those on unschedulable hosts stay as
// they are.
//
// How: a greedy pass takes, each step, the move that most reduces the load
// standing over the target (the sum over hosts of load - threshold*mean),
// then drops any move the rest can do without; then an exhaustive search
// of every plan with fewer moves, as far as a fixed budget allows.
// Plan.Minimal says whether that search finished, which proves no shorter
// plan exists. Every single move is always tried (it costs one pass over
// containers times hosts); two or more are tried when the candidates are
// few enough, as on a handful of hosts.
//
// When the threshold cannot be reached (or not within MaxMoves) the error
// is nil and the plan is the best found: Reached false, Reason says why,
// ImbalanceAfter what it gets to.
func Rebalance(hosts []Host, containers []Container, opts Options) (Plan, error) {
	t := opts.Threshold
	if t == 0 {
		t = DefaultThreshold
	}
	if !(t >= 1) || math.IsInf(t, 0) {
		return Plan{}, fmt.Errorf("%w: threshold %v: imbalance is max/mean, never under 1", ErrInvalid, opts.Threshold)
	}
	if opts.MaxMoves < 0 {
		return Plan{}, fmt.Errorf("%w: MaxMoves %d is negative", ErrInvalid, opts.MaxMoves)
	}
	st, err := newState(hosts, containers)
	if err != nil {
		return Plan{}, err
	}
	r := &rebalancer{st: st, t: t, maxMoves: opts.MaxMoves}
	return r.run(), nil
}

type rebalancer struct {
	st       *state
	t        float64
	maxMoves int
	// The start state, restored by copying rather than by undoing moves,
	// so that no amount of trying leaves float drift in the sums.
	start []int // each container's host
	cpu0  []float64
	mem0  []int64
	n0    []int
}

type pair struct{ c, to int }

func (r *rebalancer) reached(imb float64) bool { return imb <= r.t*(1+1e-9) }

func (r *rebalancer) run() Plan {
	st := r.st
	r.start = make([]int, len(st.cons))
	for i, c := range st.cons {
		r.start[i] = c.host
	}
	r.cpu0, r.mem0, r.n0 = slices.Clone(st.cpu), slices.Clone(st.mem), slices.Clone(st.count)
	before := st.imbalance()
	plan := Plan{ImbalanceBefore: before, ImbalanceAfter: before}
	if r.reached(before) {
		plan.Reached, plan.Minimal = true, true
		return plan
	}
	if len(st.schedulable()) < 2 {
		plan.Reason = "fewer than two schedulable hosts: nothing can move"
		return plan
	}

	greedy, why := r.greedy()
	greedyImb := r.imbalanceOf(greedy)
	ok := r.reached(greedyImb)
	if ok {
		greedy = r.prune(greedy)
		greedyImb = r.imbalanceOf(greedy)
	}

	// Look for anything shorter than the greedy plan (or, when it failed,
	// for anything at all within MaxMoves).
	limit := len(greedy) - 1
	if !ok {
		limit = r.maxMoves
		if limit == 0 {
			limit = len(st.cons)
		}
	}
	exact, exactImb, found, complete := r.search(limit)
	switch {
	case found:
		plan.Moves, plan.ImbalanceAfter, plan.Reached, plan.Minimal = exact, exactImb, true, true
	case ok:
		plan.Moves, plan.ImbalanceAfter, plan.Reached, plan.Minimal = r.moves(greedy), greedyImb, true, complete
	default:
		switch {
		case complete && r.maxMoves > 0:
			why = fmt.Sprintf("no plan within MaxMoves %d reaches it", r.maxMoves)
		case complete:
			why = "no plan reaches it (every one was tried)"
		}
		plan.Moves, plan.ImbalanceAfter = r.moves(greedy), greedyImb
		plan.Reason = fmt.Sprintf("threshold %.3g not reached: %s; best found %.3f", r.t, why, greedyImb)
	}
	return plan
}

// moves turns pairs, in execution order, into the plan's moves.
func (r *rebalancer) moves(ps []pair) []Move {
	out := make([]Move, len(ps))
	for k, p := range ps {
		out[k] = Move{Container: r.st.cons[p.c].name, From: r.st.hosts[r.start[p.c]].name, To: r.st.hosts[p.to].name}
	}
	return out
}

// apply runs ps from the start state; it reports false (and leaves the
// state at the start) if a step does not fit.
func (r *rebalancer) apply(ps []pair) bool {
	for _, p := range ps {
		if !r.st.fits(p.c, p.to) {
			r.reset()
			return false
		}
		r.st.assign(p.c, p.to)
	}
	return true
}

func (r *rebalancer) reset() {
	for i := range r.st.cons {
		r.st.cons[i].host = r.start[i]
	}
	copy(r.st.cpu, r.cpu0)
	copy(r.st.mem, r.mem0)
	copy(r.st.count, r.n0)
}

func (r *rebalancer) imbalanceOf(ps []pair) float64 {
	if !r.apply(ps) {
		return math.Inf(1)
	}
	imb := r.st.imbalance()
	r.reset()
	return imb
}

// prune drops moves the rest of a reaching plan does without, latest
// first: greedy steps taken early for a target that later moves also
// served can turn out to be unnecessary.
func (r *rebalancer) prune(ps []pair) []pair {
	for k := len(ps) - 1; k >= 0 && len(ps) > 1; k-- {
		try := slices.Delete(slices.Clone(ps), k, k+1)
		if r.reached(r.imbalanceOf(try)) {
			ps = try
		}
	}
	return ps
}

// movable: containers the rebalance may move.
func (r *rebalancer) movable(i int) bool {
	c := r.st.cons[i]
	return c.host >= 0 && r.st.hosts[c.host].sched && (c.cpu > 0 || c.mem > 0)
}

// greedy returns its moves in order (the state back at the start) and,
// when it stops short of the threshold, why. If it does not reach, it
// keeps the prefix with the lowest imbalance.
func (r *rebalancer) greedy() ([]pair, string) {
	st := r.st
	var ps []pair
	moved := make([]bool, len(st.cons))
	bestLen, bestImb := 0, st.imbalance()
	why := ""
	var sorted, suffix []float64
	for {
		if r.maxMoves > 0 && len(ps) >= r.maxMoves {
			why = fmt.Sprintf("MaxMoves %d used", r.maxMoves)
			break
		}
		x := st.summary()
		imb := x.imbalance()
		if r.reached(imb) {
			break
		}
		sorted, suffix = x.sortedLoads(st, sorted, suffix)
		excess := func(t float64) float64 {
			k, _ := slices.BinarySearch(sorted, t)
			for k < len(sorted) && sorted[k] <= t {
				k++
			}
			return suffix[k] - t*float64(len(sorted)-k)
		}
		target := r.t * x.sum / float64(x.n)
		e := excess(target)
		var best struct {
			p          pair
			e, imb, sq float64
			has        bool
		}
		for i, c := range st.cons {
			if moved[i] || !r.movable(i) || x.loads[c.host] <= target {
				continue
			}
			s := c.host
			ls, ls2 := x.loads[s], st.loadWith(s, i, -1)
			for d := range st.hosts {
				if d == s || !st.hosts[d].sched || !st.fits(i, d) {
					continue
				}
				ld, ld2 := x.loads[d], st.loadWith(d, i, 1)
				sum := x.sum - ls - ld + ls2 + ld2
				t2 := r.t * sum / float64(x.n)
				e2 := excess(t2) - pos(ls-t2) - pos(ld-t2) + pos(ls2-t2) + pos(ld2-t2)
				imb2, sq2 := x.after(s, d, ls2, ld2)
				if !best.has || e2 < best.e-improveEps || (e2 <= best.e+improveEps && better(imb2, sq2, best.imb, best.sq)) {
					best.p, best.e, best.imb, best.sq, best.has = pair{i, d}, e2, imb2, sq2, true
				}
			}
		}
		if !best.has || best.e >= e-improveEps {
			why = "no single move lowers the load over the target further"
			break
		}
		st.assign(best.p.c, best.p.to)
		moved[best.p.c] = true
		ps = append(ps, best.p)
		if imb := st.imbalance(); imb < bestImb-improveEps {
			bestLen, bestImb = len(ps), imb
		}
	}
	r.reset()
	if !r.reached(r.imbalanceOf(ps)) {
		ps = ps[:bestLen]
	}
	return ps, why
}

// sortedLoads fills the schedulable hosts' loads in ascending order and
// their suffix sums, so the load over any target costs a binary search.
func (x *loadSummary) sortedLoads(st *state, sorted, suffix []float64) ([]float64, []float64) {
	sorted = sorted[:0]
	for h := range st.hosts {
		if st.hosts[h].sched {
			sorted = append(sorted, x.loads[h])
		}
	}
	slices.Sort(sorted)
	suffix = append(suffix[:0], make([]float64, len(sorted)+1)...)
	for k := len(sorted) - 1; k >= 0; k-- {
		suffix[k] = suffix[k+1] + sorted[k]
	}
	return sorted, suffix
}
