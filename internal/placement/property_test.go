package placement

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// randomCase draws a small cluster whose containers start within
// capacity (those that fit nowhere start unplaced). Half the time most of
// them start on the first host, so rebalancing has work to do.
func randomCase(rng *rand.Rand, maxHosts, maxContainers int) ([]Host, []Container) {
	return drawCase(rng, 1, maxHosts, 0, maxContainers, rng.IntN(2) == 0)
}

func drawCase(rng *rand.Rand, minHosts, maxHosts, minContainers, maxContainers int, skew bool) ([]Host, []Container) {
	nh := minHosts + rng.IntN(maxHosts-minHosts+1)
	hosts := make([]Host, nh)
	cpus := []float64{1, 2, 4, 8}
	mems := []int64{1, 2, 4, 8}
	for i := range hosts {
		hosts[i] = Host{Name: fmt.Sprintf("h%d", i), CPUs: cpus[rng.IntN(4)], MemoryBytes: mems[rng.IntN(4)] * gib, Unschedulable: rng.IntN(5) == 0}
	}
	ccpu := []float64{0, 0.25, 0.5, 1, 1.5, 2, 3}
	cmem := []int64{0, gib / 4, gib / 2, gib, 2 * gib}
	nc := minContainers + rng.IntN(maxContainers-minContainers+1)
	cs := make([]Container, nc)
	cpu := map[string]float64{}
	mem := map[string]int64{}
	for i := range cs {
		c := Container{Name: fmt.Sprintf("c%d", i), CPUs: ccpu[rng.IntN(len(ccpu))], MemoryBytes: cmem[rng.IntN(len(cmem))]}
		if rng.IntN(6) > 0 {
			h := hosts[rng.IntN(nh)]
			if skew && rng.IntN(4) > 0 {
				h = hosts[0]
			}
			if cpu[h.Name]+c.CPUs <= h.CPUs && mem[h.Name]+c.MemoryBytes <= h.MemoryBytes {
				c.Host = h.Name
				cpu[h.Name] += c.CPUs
				mem[h.Name] += c.MemoryBytes
			}
		}
		cs[i] = c
	}
	return hosts, cs
}

func shuffled(rng *rand.Rand, hosts []Host, cs []Container) ([]Host, []Container) {
	h, c := slices.Clone(hosts), slices.Clone(cs)
	rng.Shuffle(len(h), func(i, j int) { h[i], h[j] = h[j], h[i] })
	rng.Shuffle(len(c), func(i, j int) { c[i], c[j] = c[j], c[i] })
	return h, c
}

// TestPropertyRebalance: on random small clusters, every plan replays
// within capacity, reports its imbalance truly, respects MaxMoves, and is
// exactly as short as the shortest plan a brute force over every
// assignment finds (or, when none reaches the threshold, says so). The
// same input shuffled gives the same plan.
func TestPropertyRebalance(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 1))
	thresholds := []float64{1, 1.1, 1.2, 1.3, 1.5, 2}
	hist := map[int]int{}
	for n := 0; n < 1000; n++ {
		hosts, cs := drawCase(rng, 2, 4, 3, 8, true)
		opts := Options{Threshold: thresholds[rng.IntN(len(thresholds))], MaxMoves: rng.IntN(5)}
		p, err := Rebalance(hosts, cs, opts)
		if err != nil {
			t.Fatalf("case %d: %v", n, err)
		}
		where := replay(t, hosts, cs, p, "")
		start := map[string]string{}
		for _, c := range cs {
			start[c.Name] = c.Host
		}
		if got := imbalanceOf(hosts, cs, start, ""); !near(p.ImbalanceBefore, got) {
			t.Fatalf("case %d: before %v, recount %v", n, p.ImbalanceBefore, got)
		}
		after := imbalanceOf(hosts, cs, where, "")
		if !near(p.ImbalanceAfter, after) {
			t.Fatalf("case %d: after %v, recount %v", n, p.ImbalanceAfter, after)
		}
		if p.Reached != (after <= opts.Threshold*(1+1e-9)) {
			t.Fatalf("case %d: reached %v with %v against %v", n, p.Reached, after, opts.Threshold)
		}
		if opts.MaxMoves > 0 && len(p.Moves) > opts.MaxMoves {
			t.Fatalf("case %d: %d moves, MaxMoves %d", n, len(p.Moves), opts.MaxMoves)
		}
		for _, m := range p.Moves {
			for _, h := range hosts {
				if h.Name == m.From && h.Unschedulable {
					t.Fatalf("case %d: %v moves off a cordoned host", n, m)
				}
			}
		}
		best := bruteMinMoves(hosts, cs, opts)
		switch {
		case best < 0 && p.Reached:
			t.Fatalf("case %d: brute force finds no plan, planner %v", n, p.Moves)
		case best >= 0 && !p.Reached:
			t.Fatalf("case %d: %d moves reach %v, planner gave up: %+v\nhosts %+v\ncs %+v", n, best, opts.Threshold, p, hosts, cs)
		case best >= 0 && len(p.Moves) != best:
			t.Fatalf("case %d: %d moves, the minimum is %d: %+v\nhosts %+v\ncs %+v", n, len(p.Moves), best, p, hosts, cs)
		case best >= 0 && !p.Minimal:
			t.Fatalf("case %d: minimal plan not reported minimal", n)
		}
		hist[best]++
		h2, c2 := shuffled(rng, hosts, cs)
		if p2, _ := Rebalance(h2, c2, opts); !reflect.DeepEqual(p, p2) {
			t.Fatalf("case %d: shuffled input gave %+v, not %+v", n, p2, p)
		}
	}
	t.Logf("cases by the minimum number of moves (-1: unreachable): %v", hist)
}

// bruteMinMoves is the fewest moves (each container at most once, onto
// schedulable hosts, in some order that never overfills a host) after
// which the imbalance is at or under the threshold; -1 if none within
// MaxMoves. Every assignment of the movable containers is tried.
func bruteMinMoves(hosts []Host, cs []Container, o Options) int {
	hs := map[string]Host{}
	var sched []string
	for _, h := range hosts {
		hs[h.Name] = h
		if !h.Unschedulable {
			sched = append(sched, h.Name)
		}
	}
	var mov []int
	for i, c := range cs {
		if c.Host != "" && !hs[c.Host].Unschedulable && (c.CPUs > 0 || c.MemoryBytes > 0) {
			mov = append(mov, i)
		}
	}
	where := map[string]string{}
	for _, c := range cs {
		where[c.Name] = c.Host
	}
	best := -1
	choice := make([]int, len(mov))
	var rec func(k int)
	rec = func(k int) {
		if k == len(mov) {
			var moves []Move
			for j, i := range mov {
				if to := sched[choice[j]]; to != cs[i].Host {
					moves = append(moves, Move{cs[i].Name, cs[i].Host, to})
				}
			}
			if (best >= 0 && len(moves) >= best) || (o.MaxMoves > 0 && len(moves) > o.MaxMoves) {
				return
			}
			w := map[string]string{}
			for n, h := range where {
				w[n] = h
			}
			for _, m := range moves {
				w[m.Container] = m.To
			}
			if imbalanceOf(hosts, cs, w, "") > o.Threshold*(1+1e-9) || !orderable(hs, cs, moves) {
				return
			}
			best = len(moves)
			return
		}
		for h := range sched {
			choice[k] = h
			rec(k + 1)
		}
	}
	rec(0) // with no schedulable host nothing is movable: one empty plan
	return best
}

// orderable: some order of moves keeps every host within capacity at
// every step (a search over the subsets done).
func orderable(hs map[string]Host, cs []Container, moves []Move) bool {
	req := map[string]Container{}
	for _, c := range cs {
		req[c.Name] = c
	}
	seen := map[int]bool{}
	var try func(done int) bool
	try = func(done int) bool {
		if done == 1<<len(moves)-1 {
			return true
		}
		if seen[done] {
			return false
		}
		seen[done] = true
		cpu := map[string]float64{}
		mem := map[string]int64{}
		for _, c := range cs {
			cpu[c.Host] += c.CPUs
			mem[c.Host] += c.MemoryBytes
		}
		for k, m := range moves {
			if done&(1<<k) != 0 {
				c := req[m.Container]
				cpu[m.From] -= c.CPUs
				mem[m.From] -= c.MemoryBytes
				cpu[m.To] += c.CPUs
				mem[m.To] += c.MemoryBytes
			}
		}
		for k, m := range moves {
			c := req[m.Container]
			if done&(1<<k) == 0 && cpu[m.To]+c.CPUs <= hs[m.To].CPUs*(1+1e-9) && mem[m.To]+c.MemoryBytes <= hs[m.To].MemoryBytes {
				if try(done | 1<<k) {
					return true
				}
			}
		}
		return false
	}
	return try(0)
}
