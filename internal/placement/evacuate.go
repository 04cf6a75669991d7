package placement

import "fmt"

// Evacuate plans a destination for every container on host, which is
// treated as unschedulable whatever its Unschedulable field says. Every
// destination stays within its capacity and the resulting imbalance over
// the other schedulable hosts is kept low; containers elsewhere are not
// moved to make room. The search is PlaceAll's, on the host's containers.
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
	// The same search as PlaceAll, with the containers taken off the
	// host: what it cannot place goes back there.
	st.largestFirst(todo)
	for _, i := range todo {
		st.assign(i, -1)
	}
	reasons, _ := st.placeMany(todo, host)
	for _, i := range todo {
		if h := st.cons[i].host; h >= 0 {
			plan.Moves = append(plan.Moves, Move{Container: st.cons[i].name, From: host, To: st.hosts[h].name})
			continue
		}
		plan.Unplaced = append(plan.Unplaced, Unplaced{Container: st.cons[i].name, Reason: reasons[i]})
		st.assign(i, hi)
	}
	plan.ImbalanceAfter = st.imbalance()
	if len(plan.Unplaced) > 0 {
		plan.Reached = false
		plan.Reason = fmt.Sprintf("%d of %d containers fit on no other host", len(plan.Unplaced), len(todo))
		return plan, &UnplacedError{Unplaced: plan.Unplaced}
	}
	return plan, nil
}
