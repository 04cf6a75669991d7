package placement

import "slices"

// searchBudget bounds the exhaustive search, in host loads evaluated
// (plans tried times hosts): about 0.1 s on a slow core.
const searchBudget = 20_000_000

// keepBest is how many reaching plans of one size are kept for ordering.
const keepBest = 32

type found struct {
	ps  []pair
	imb float64
}

// search tries every plan of 1, 2, ... up to limit moves (each container
// at most once, to a schedulable host it could fit on) and returns the
// first size that reaches the threshold, the plan with the lowest
// imbalance among them. complete is false when it stopped because the
// next size would exceed the budget, so not finding one proves nothing.
func (r *rebalancer) search(limit int) (moves []Move, imb float64, ok, complete bool) {
	st := r.st
	if limit >= 1 {
		// One move is judged in O(1) from the load summary, so it is
		// always searched: the case the planner must never miss is
		// one move doing what the greedy pass needed several for.
		if ps, imb, ok := r.searchOne(); ok {
			return r.moves(ps), imb, true, true
		}
	}
	if limit < 2 {
		return nil, 0, false, true
	}
	candidate := func(i, d int) bool {
		return d != st.cons[i].host && st.hosts[d].sched && st.fitsEmpty(i, d)
	}
	n := 0
	for i := range st.cons {
		if r.movable(i) {
			for d := range st.hosts {
				if candidate(i, d) {
					n++
				}
			}
		}
	}
	budget := float64(searchBudget)
	hosts := float64(len(st.hosts))
	if choose(n, 2)*hosts > budget {
		return nil, 0, false, false
	}
	pairs := make([]pair, 0, n)
	for i := range st.cons {
		if r.movable(i) {
			for d := range st.hosts {
				if candidate(i, d) {
					pairs = append(pairs, pair{i, d})
				}
			}
		}
	}
	// next[k]: the first pair of a later container than pairs[k]'s, so a
	// plan is enumerated once, its containers in increasing order.
	next := make([]int, len(pairs)+1)
	next[len(pairs)] = len(pairs)
	for k := len(pairs) - 1; k >= 0; k-- {
		next[k] = k + 1
		if k+1 < len(pairs) && pairs[k+1].c == pairs[k].c {
			next[k] = next[k+1]
		}
	}
	for j := 2; j <= limit && j <= len(pairs); j++ {
		cost := choose(len(pairs), j) * hosts
		if cost > budget {
			return nil, 0, false, false
		}
		budget -= cost
		d := &dfs{r: r, pairs: pairs, next: next, chosen: make([]pair, 0, j)}
		d.walk(0, j)
		slices.SortStableFunc(d.best, func(a, b found) int {
			switch {
			case a.imb < b.imb:
				return -1
			case a.imb > b.imb:
				return 1
			}
			return 0
		})
		for _, f := range d.best {
			if ps, ok := r.order(f.ps); ok {
				return r.moves(ps), f.imb, true, true
			}
		}
		if d.reaching > len(d.best) {
			return nil, 0, false, false // some were never tried for an order
		}
	}
	return nil, 0, false, true
}

// searchOne is the best single move that reaches the threshold.
func (r *rebalancer) searchOne() ([]pair, float64, bool) {
	st := r.st
	x := st.summary()
	best, bestImb := pair{-1, -1}, 0.0
	for i := range st.cons {
		if !r.movable(i) {
			continue
		}
		src := st.cons[i].host
		out := st.loadWith(src, i, -1)
		for d := range st.hosts {
			if d == src || !st.hosts[d].sched || !st.fits(i, d) {
				continue
			}
			imb, _ := x.after(src, d, out, st.loadWith(d, i, 1))
			if r.reached(imb) && (best.c < 0 || imb < bestImb) {
				best, bestImb = pair{i, d}, imb
			}
		}
	}
	if best.c < 0 {
		return nil, 0, false
	}
	// Judged again on the state itself, so the figure reported is the
	// one a recount gives.
	ps := []pair{best}
	return ps, r.imbalanceOf(ps), true
}

func choose(n, k int) float64 {
	v := 1.0
	for i := 0; i < k; i++ {
		v *= float64(n-i) / float64(i+1)
	}
	return v
}

type dfs struct {
	r        *rebalancer
	pairs    []pair
	next     []int
	chosen   []pair
	best     []found // the keepBest lowest imbalances, in enumeration order among equals
	reaching int
}

// walk adds left more moves from pairs[from:]. The state is changed in
// place and restored exactly (saved sums, not subtraction, so millions of
// visits leave no float drift).
func (d *dfs) walk(from, left int) {
	st := d.r.st
	if left == 0 {
		d.leaf()
		return
	}
	for k := from; k < len(d.pairs); k++ {
		p := d.pairs[k]
		src := st.cons[p.c].host
		sc, sm, sn := st.cpu[src], st.mem[src], st.count[src]
		dc, dm, dn := st.cpu[p.to], st.mem[p.to], st.count[p.to]
		st.assign(p.c, p.to)
		d.chosen = append(d.chosen, p)
		d.walk(d.next[k], left-1)
		d.chosen = d.chosen[:len(d.chosen)-1]
		st.cons[p.c].host = src
		st.cpu[src], st.mem[src], st.count[src] = sc, sm, sn
		st.cpu[p.to], st.mem[p.to], st.count[p.to] = dc, dm, dn
	}
}

func (d *dfs) leaf() {
	st := d.r.st
	for _, p := range d.chosen {
		if st.overCapacity(p.to) {
			return
		}
	}
	imb := st.imbalance()
	if !d.r.reached(imb) {
		return
	}
	d.reaching++
	if len(d.best) == keepBest && imb >= d.best[len(d.best)-1].imb {
		return
	}
	f := found{ps: slices.Clone(d.chosen), imb: imb}
	k := len(d.best)
	for k > 0 && d.best[k-1].imb > imb {
		k--
	}
	d.best = slices.Insert(d.best, k, f)
	if len(d.best) > keepBest {
		d.best = d.best[:keepBest]
	}
}

// order finds a sequence in which each move of ps fits when it runs,
// from the start state. The final state fits, but an order need not
// exist (a swap between two full hosts has none), and the obvious one
// can fail where another works (move a small container off a host first
// so a large one can come in): so every order is searched, depth first,
// moves in plan order at each step, remembering the sets of moves done
// from which no order finishes (the state depends only on the set).
func (r *rebalancer) order(ps []pair) ([]pair, bool) {
	if len(ps) > 62 {
		return nil, false // beyond any plan the budget lets the search try
	}
	st := r.st
	full := uint64(1)<<len(ps) - 1
	dead := map[uint64]bool{}
	seq := make([]pair, 0, len(ps))
	var walk func(done uint64) bool
	walk = func(done uint64) bool {
		if done == full {
			return true
		}
		if dead[done] {
			return false
		}
		for k, p := range ps {
			if done&(1<<k) != 0 || !st.fits(p.c, p.to) {
				continue
			}
			src := st.cons[p.c].host
			sc, sm, sn := st.cpu[src], st.mem[src], st.count[src]
			dc, dm, dn := st.cpu[p.to], st.mem[p.to], st.count[p.to]
			st.assign(p.c, p.to)
			seq = append(seq, p)
			if walk(done | 1<<k) {
				return true
			}
			seq = seq[:len(seq)-1]
			st.cons[p.c].host = src
			st.cpu[src], st.mem[src], st.count[src] = sc, sm, sn
			st.cpu[p.to], st.mem[p.to], st.count[p.to] = dc, dm, dn
		}
		dead[done] = true
		return false
	}
	ok := walk(0)
	r.reset()
	return seq, ok
}
