package placement

import (
	"errors"
	"fmt"
	"math"
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

// TestPropertyEvacuate: random clusters, a random host emptied. The plan
// replays within capacity, accounts for every container of the host
// (moved or unplaced with a reason), errors are the documented ones, and
// shuffled input gives the same plan. Where a brute force finds room for
// everything, so must the planner (true of these small cases; on large
// nearly full ones it is a bin-packing search with a budget).
func TestPropertyEvacuate(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 1))
	missed, feasible := 0, 0
	for n := 0; n < 400; n++ {
		hosts, cs := randomCase(rng, 4, 8)
		victim := hosts[rng.IntN(len(hosts))].Name
		p, err := Evacuate(hosts, cs, victim)
		var on []string
		for _, c := range cs {
			if c.Host == victim {
				on = append(on, c.Name)
			}
		}
		others := 0
		for _, h := range hosts {
			if !h.Unschedulable && h.Name != victim {
				others++
			}
		}
		if errors.Is(err, ErrNoSchedulableHost) {
			if others > 0 || len(on) == 0 {
				t.Fatalf("case %d: %v with %d other hosts and %d containers", n, err, others, len(on))
			}
			continue
		}
		var u *UnplacedError
		if err != nil && !errors.As(err, &u) {
			t.Fatalf("case %d: %v", n, err)
		}
		if (err != nil) != (len(p.Unplaced) > 0) || p.Reached != (len(p.Unplaced) == 0) {
			t.Fatalf("case %d: err %v with plan %+v", n, err, p)
		}
		where := replay(t, hosts, cs, p, victim)
		accounted := map[string]bool{}
		for _, m := range p.Moves {
			accounted[m.Container] = true
		}
		for _, x := range p.Unplaced {
			if x.Reason == "" || where[x.Container] != victim {
				t.Fatalf("case %d: unplaced %+v", n, x)
			}
			accounted[x.Container] = true
		}
		if len(accounted) != len(on) {
			t.Fatalf("case %d: %d containers on %s, %d accounted for", n, len(on), victim, len(accounted))
		}
		if got := imbalanceOf(hosts, cs, where, victim); !near(p.ImbalanceAfter, got) {
			t.Fatalf("case %d: after %v, recount %v", n, p.ImbalanceAfter, got)
		}
		if bruteFits(hosts, cs, victim) {
			feasible++
			if len(p.Unplaced) > 0 {
				missed++
			}
		}
		h2, c2 := shuffled(rng, hosts, cs)
		if p2, _ := Evacuate(h2, c2, victim); !reflect.DeepEqual(p, p2) {
			t.Fatalf("case %d: shuffled input gave %+v, not %+v", n, p2, p)
		}
	}
	t.Logf("evacuations where everything could fit: %d, planner left some behind in %d", feasible, missed)
	if missed > 0 {
		t.Errorf("Evacuate left containers behind in %d feasible small cases", missed)
	}
}

// bruteFits: the containers on victim can all go to other schedulable
// hosts without moving anything else.
func bruteFits(hosts []Host, cs []Container, victim string) bool {
	var sched []Host
	for _, h := range hosts {
		if !h.Unschedulable && h.Name != victim {
			sched = append(sched, h)
		}
	}
	cpu := make([]float64, len(sched))
	mem := make([]int64, len(sched))
	var todo []Container
	for _, c := range cs {
		if c.Host == victim {
			todo = append(todo, c)
			continue
		}
		for k, h := range sched {
			if h.Name == c.Host {
				cpu[k] += c.CPUs
				mem[k] += c.MemoryBytes
			}
		}
	}
	var rec func(i int) bool
	rec = func(i int) bool {
		if i == len(todo) {
			return true
		}
		c := todo[i]
		for k, h := range sched {
			if cpu[k]+c.CPUs <= h.CPUs*(1+1e-9) && mem[k]+c.MemoryBytes <= h.MemoryBytes {
				cpu[k] += c.CPUs
				mem[k] += c.MemoryBytes
				ok := rec(i + 1)
				cpu[k] -= c.CPUs
				mem[k] -= c.MemoryBytes
				if ok {
					return true
				}
			}
		}
		return false
	}
	return rec(0)
}

// TestPropertyPlaceAll: random clusters, the unplaced containers placed
// at once. The plan replays within capacity, accounts for every unplaced
// container, and shuffled input gives the same plan. Where a brute force
// fits everything, so must the planner.
func TestPropertyPlaceAll(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 1))
	missed, feasible := 0, 0
	for n := 0; n < 400; n++ {
		hosts, cs := randomCase(rng, 4, 8)
		for i := range cs {
			if rng.IntN(2) == 0 {
				cs[i].Host = ""
			}
		}
		p, err := PlaceAll(hosts, cs)
		var todo int
		for _, c := range cs {
			if c.Host == "" {
				todo++
			}
		}
		sched := false
		for _, h := range hosts {
			sched = sched || !h.Unschedulable
		}
		if errors.Is(err, ErrNoSchedulableHost) {
			if sched || todo == 0 {
				t.Fatalf("case %d: %v", n, err)
			}
			continue
		}
		var u *UnplacedError
		if err != nil && !errors.As(err, &u) {
			t.Fatalf("case %d: %v", n, err)
		}
		replay(t, hosts, cs, p, "")
		if len(p.Moves)+len(p.Unplaced) != todo {
			t.Fatalf("case %d: %d to place, %d placed, %d unplaced", n, todo, len(p.Moves), len(p.Unplaced))
		}
		// A fresh cluster with the placed containers on a pseudo-host
		// that is then "evacuated" is the same question as placing them.
		pseudo := append(slices.Clone(hosts), Host{Name: "\x00new", CPUs: math.MaxFloat64 / 4, MemoryBytes: math.MaxInt64 / 4, Unschedulable: true})
		pcs := slices.Clone(cs)
		for i := range pcs {
			if pcs[i].Host == "" {
				pcs[i].Host = "\x00new"
			}
		}
		if todo > 0 && bruteFits(pseudo, pcs, "\x00new") {
			feasible++
			if len(p.Unplaced) > 0 {
				missed++
			}
		}
		h2, c2 := shuffled(rng, hosts, cs)
		if p2, _ := PlaceAll(h2, c2); !reflect.DeepEqual(p, p2) {
			t.Fatalf("case %d: shuffled input gave %+v, not %+v", n, p2, p)
		}
	}
	t.Logf("placements where everything could fit: %d, planner left some out in %d", feasible, missed)
	if missed > 0 {
		t.Errorf("PlaceAll left containers out of %d feasible small cases", missed)
	}
}

// TestPropertyPlace: the chosen host is schedulable, has room, and no
// host with room would be less loaded after; an error only when no
// schedulable host has room.
func TestPropertyPlace(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 1))
	for n := 0; n < 400; n++ {
		hosts, cs := randomCase(rng, 5, 8)
		c := Container{Name: "new", CPUs: []float64{0, 0.5, 1, 2, 4}[rng.IntN(5)], MemoryBytes: []int64{0, gib / 2, gib, 4 * gib}[rng.IntN(4)]}
		got, err := Place(hosts, cs, c)
		where := map[string]string{}
		for _, x := range cs {
			where[x.Name] = x.Host
		}
		bestLoad, fitting := math.Inf(1), 0
		var gotLoad float64
		for _, h := range hosts {
			if h.Unschedulable {
				continue
			}
			var cpu float64
			var mem int64
			for _, x := range cs {
				if x.Host == h.Name {
					cpu += x.CPUs
					mem += x.MemoryBytes
				}
			}
			if cpu+c.CPUs > h.CPUs*(1+1e-9) || mem+c.MemoryBytes > h.MemoryBytes {
				continue
			}
			fitting++
			l := math.Max((cpu+c.CPUs)/h.CPUs, float64(mem+c.MemoryBytes)/float64(h.MemoryBytes))
			bestLoad = math.Min(bestLoad, l)
			if h.Name == got {
				gotLoad = l
			}
		}
		if err != nil {
			if fitting > 0 {
				t.Fatalf("case %d: %v, but %d hosts have room", n, err, fitting)
			}
			continue
		}
		if fitting == 0 || gotLoad != bestLoad {
			t.Fatalf("case %d: %s (load after %v), best %v", n, got, gotLoad, bestLoad)
		}
		h2, c2 := shuffled(rng, hosts, cs)
		if got2, _ := Place(h2, c2, c); got2 != got {
			t.Fatalf("case %d: shuffled input gave %s, not %s", n, got2, got)
		}
	}
}
