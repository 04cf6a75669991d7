package placement

import (
	"fmt"
	"slices"
)

// Stats says how PlaceAll got to its plan; the benchmark prints it.
type Stats struct {
	// GreedyViolations: hosts over capacity after the greedy pass, which
	// puts a container that fits nowhere where it overflows least.
	GreedyViolations int `json:"greedy_violations"`
	// TabuSteps: moves of the tabu search that repaired them.
	TabuSteps int `json:"tabu_steps"`
	// BalanceSteps: improving moves of the balancing descent.
	BalanceSteps int `json:"balance_steps"`
	// GreedyImbalance: the imbalance after the greedy pass.
	GreedyImbalance float64 `json:"greedy_imbalance"`
}

// PlaceAll places every container whose Host is "" on a schedulable host;
// containers already placed stay where they are and count as load. The
// plan's moves (From "", sorted by container name) only add to their
// hosts and may run in any order; no host ends over capacity. A host
// already over capacity receives nothing.
//
// How: largest container first, each on the host with the lowest load
// after it (or, when it fits nowhere, where it overflows least); then a
// tabu search relocating and swapping containers until no host is over
// capacity; then a descent that lowers the imbalance. Containers the
// search cannot fit are left out: the error is an *UnplacedError naming
// each with the reason, and the plan places all the others.
func PlaceAll(hosts []Host, containers []Container) (Plan, error) {
	p, _, err := PlaceAllStats(hosts, containers)
	return p, err
}

// PlaceAllStats is PlaceAll that also says how the search went.
func PlaceAllStats(hosts []Host, containers []Container) (Plan, Stats, error) {
	var stats Stats
	st, err := newState(hosts, containers)
	if err != nil {
		return Plan{}, stats, err
	}
	plan := Plan{ImbalanceBefore: st.imbalance(), Reached: true}
	var todo []int
	for i, c := range st.cons {
		if c.host < 0 {
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		plan.ImbalanceAfter = plan.ImbalanceBefore
		stats.GreedyImbalance = plan.ImbalanceBefore
		return plan, stats, nil
	}
	if len(st.schedulable()) == 0 {
		return Plan{}, stats, fmt.Errorf("place %d containers: %w", len(todo), ErrNoSchedulableHost)
	}
	st.largestFirst(todo)
	reasons, stats := st.placeMany(todo, "")

	slices.Sort(todo)
	for _, i := range todo {
		if h := st.cons[i].host; h >= 0 {
			plan.Moves = append(plan.Moves, Move{Container: st.cons[i].name, To: st.hosts[h].name})
		} else {
			plan.Unplaced = append(plan.Unplaced, Unplaced{Container: st.cons[i].name, Reason: reasons[i]})
		}
	}
	plan.ImbalanceAfter = st.imbalance()
	if len(plan.Unplaced) > 0 {
		plan.Reached = false
		plan.Reason = fmt.Sprintf("%d of %d containers fit nowhere", len(plan.Unplaced), len(todo))
		return plan, stats, &UnplacedError{Unplaced: plan.Unplaced}
	}
	return plan, stats, nil
}

// placeMany places the unassigned containers todo (largest first) on
// schedulable hosts: the greedy pass, the tabu repair, the last tries for
// what is still over capacity, the balancing descent. What it cannot
// place stays unassigned, with the reason (skip names the host being
// emptied, for the wording).
func (s *state) placeMany(todo []int, skip string) (map[int]string, Stats) {
	var stats Stats
	dest := make([]bool, len(s.hosts))
	for h := range s.hosts {
		dest[h] = s.hosts[h].sched && !s.overCapacity(h)
	}
	// A container with no room on any host even before the others are
	// placed is left out now, so the search does not juggle it in vain.
	reasons := map[int]string{}
	movable := make([]bool, len(s.cons))
	for _, i := range todo {
		if s.spread(i) < 0 {
			reasons[i] = s.whyNot(i, skip)
			continue
		}
		movable[i] = true
	}
	// Spreading (lowest load after) gives the best balance; packing
	// (tightest fit) fits more when hosts are nearly full. Spread first,
	// and pack only if spreading overflowed.
	start := s.snapshot()
	s.greedy(todo, movable, dest, s.spread)
	if v := s.totalViolation(dest); v > 0 {
		spread := s.snapshot()
		s.restore(start)
		s.greedy(todo, movable, dest, s.pack)
		if s.totalViolation(dest) >= v {
			s.restore(spread)
		}
	}
	stats.GreedyImbalance = s.imbalance()
	for h := range s.hosts {
		if dest[h] && s.overCapacity(h) {
			stats.GreedyViolations++
		}
	}
	if stats.GreedyViolations > 0 {
		stats.TabuSteps = s.repair(movable, dest, tabuBudget)
	}
	// What the search left over capacity: take containers off, largest
	// first, then try them once more on whatever room is left.
	var evicted []int
	for h := range s.hosts {
		if !dest[h] || !s.overCapacity(h) {
			continue
		}
		var on []int
		for _, i := range todo {
			if movable[i] && s.cons[i].host == h {
				on = append(on, i)
			}
		}
		s.largestFirst(on)
		for _, i := range on {
			if !s.overCapacity(h) {
				break
			}
			s.assign(i, -1)
			evicted = append(evicted, i)
		}
	}
	s.largestFirst(evicted)
	for _, i := range evicted {
		if s.insert(i, movable) {
			continue
		}
		movable[i] = false
		reasons[i] = s.whyNot(i, skip) + " once the others are placed"
	}
	stats.BalanceSteps = s.balance(movable, 4*len(todo)+16)

	return reasons, stats
}

// insert places container i on a destination, making room if it must by
// moving one or two movable containers off a host to other hosts (where
// they fit as they are). The search leaves the hosts nearly full, and a
// container too large for any gap often fits in the room two smaller
// ones leave.
func (s *state) insert(i int, movable []bool) bool {
	if h := s.spread(i); h >= 0 {
		s.assign(i, h)
		return true
	}
	ci := s.cons[i]
	on := make([][]int, len(s.hosts))
	for j, c := range s.cons {
		if movable[j] && j != i && c.host >= 0 {
			on[c.host] = append(on[c.host], j)
		}
	}
	start := s.snapshot()
	for d := range s.hosts {
		if !s.hosts[d].sched {
			continue
		}
		for a, j := range on[d] {
			// Eject j alone, or j and a later k.
			for b := a; b < len(on[d]); b++ {
				out := []int{j}
				if b > a {
					out = append(out, on[d][b])
				}
				cpu, mem := s.cpu[d]+ci.cpu, s.mem[d]+ci.mem
				for _, k := range out {
					cpu -= s.cons[k].cpu
					mem -= s.cons[k].mem
				}
				if !s.within(d, cpu, mem) {
					continue
				}
				ok := true
				for _, k := range out {
					s.assign(k, -1)
				}
				s.assign(i, d)
				for _, k := range out {
					h := s.spread(k)
					if h < 0 || h == d {
						ok = false
						break
					}
					s.assign(k, h)
				}
				if ok {
					return true
				}
				s.restore(start)
			}
		}
	}
	return false
}

// greedy assigns the movable containers of todo in order: where choose
// says, or, when it fits nowhere, where it overflows least.
func (s *state) greedy(todo []int, movable, dest []bool, choose func(int) int) {
	for _, i := range todo {
		if !movable[i] {
			continue
		}
		h := choose(i)
		if h < 0 {
			h = s.leastOverflow(i, dest)
		}
		s.assign(i, h)
	}
}

// leastOverflow is the destination where container i adds the least
// violation, ties by lower load after, then name.
func (s *state) leastOverflow(i int, dest []bool) int {
	best, bv, bl := -1, 0.0, 0.0
	for h := range s.hosts {
		if !dest[h] {
			continue
		}
		v := s.violationWith(h, i) - s.violation(h)
		l := s.loadWith(h, i, 1)
		if best < 0 || v < bv-improveEps || (v <= bv+improveEps && l < bl) {
			best, bv, bl = h, v, l
		}
	}
	return best
}
