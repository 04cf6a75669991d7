package placement

import "fmt"

// Evacuate plans a destination for every container on host, which is
// treated as unschedulable whatever its Unschedulable field says. Every
// destination stays within its capacity and the resulting imbalance over
// the other schedulable hosts is kept low; containers elsewhere are not
// moved to make room.
//
// The moves are ordered largest container first and only add to their
// destinations, so they may run in that order or in parallel.
//
// Errors: ErrUnknownHost; ErrNoSchedulableHost when the host runs
// containers and no other host is schedulable; ErrInvalid for bad input.
// When some containers fit on no other host, the error is an
// *UnplacedError naming each with the reason, and the returned plan still
// holds the moves for all the others (Reached false, Unplaced filled), so
// a caller can move what fits and leave the rest running where they are.
//
// ImbalanceBefore and ImbalanceAfter are over the schedulable hosts other
// than host, before and after the moves.
func Evacuate(hosts []Host, containers []Container, host string) (Plan, error) {
	st, err := newState(hosts, containers)
	if err != nil {
		return Plan{}, err
	}
	hi, ok := st.byName[host]
	if !ok {
		return Plan{}, fmt.Errorf("evacuate %s: %w", host, ErrUnknownHost)
	}
	st.hosts[hi].sched = false
	var todo []int
	for i, c := range st.cons {
		if c.host == hi {
			todo = append(todo, i)
		}
	}
	plan := Plan{ImbalanceBefore: st.imbalance(), Reached: true}
	if len(todo) == 0 {
		plan.ImbalanceAfter = plan.ImbalanceBefore
		return plan, nil
	}
	if len(st.schedulable()) == 0 {
		return Plan{}, fmt.Errorf("evacuate %s: %d containers to move and %w other than it", host, len(todo), ErrNoSchedulableHost)
	}
	st.largestFirst(todo)

	// Spreading gives the best balance; packing can fit a large container
	// that spreading left without room. Keep whichever places more, then
	// the better balanced.
	spread := st.evacuateWith(todo, hi, st.spread)
	best := spread
	if spread.unplaced > 0 {
		if packed := st.evacuateWith(todo, hi, st.pack); packed.unplaced < spread.unplaced {
			best = packed
		}
	}
	for k, i := range todo {
		st.assign(i, best.dest[k])
	}
	movable := make([]bool, len(st.cons))
	for k, i := range todo {
		movable[i] = best.dest[k] != hi
	}
	st.balance(movable, 4*len(todo)+16)

	for _, i := range todo {
		if st.cons[i].host != hi {
			plan.Moves = append(plan.Moves, Move{Container: st.cons[i].name, From: host, To: st.hosts[st.cons[i].host].name})
			continue
		}
		plan.Unplaced = append(plan.Unplaced, Unplaced{Container: st.cons[i].name, Reason: st.whyNot(i, host)})
	}
	plan.ImbalanceAfter = st.imbalance()
	if len(plan.Unplaced) > 0 {
		plan.Reached = false
		plan.Reason = fmt.Sprintf("%d of %d containers fit on no other host", len(plan.Unplaced), len(todo))
		return plan, &UnplacedError{Unplaced: plan.Unplaced}
	}
	return plan, nil
}

type attempt struct {
	dest     []int // per container of todo; the evacuated host when unplaced
	unplaced int
	imb      float64
}

// evacuateWith assigns todo in order with choose, and undoes it, leaving
// the state as it found it.
func (s *state) evacuateWith(todo []int, from int, choose func(int) int) attempt {
	a := attempt{dest: make([]int, len(todo))}
	for k, i := range todo {
		h := choose(i)
		if h < 0 {
			a.dest[k] = from
			a.unplaced++
			continue
		}
		a.dest[k] = h
		s.assign(i, h)
	}
	a.imb = s.imbalance()
	for _, i := range todo {
		s.assign(i, from)
	}
	return a
}
