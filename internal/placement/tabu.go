package placement

// violationOf measures how far sums on host h are over its capacity, as
// fractions of it, summed over CPU and memory; 0 within capacity.
func (s *state) violationOf(h int, cpu float64, mem int64) float64 {
	if s.within(h, cpu, mem) {
		return 0
	}
	return pos(cpu/s.hosts[h].cpu-1-capSlack) + pos(float64(mem)/float64(s.hosts[h].mem)-1)
}

func (s *state) violation(h int) float64 { return s.violationOf(h, s.cpu[h], s.mem[h]) }

func (s *state) violationWith(h, i int) float64 {
	c := s.cons[i]
	return s.violationOf(h, s.cpu[h]+c.cpu, s.mem[h]+c.mem)
}

// tabuTenure is how many steps a container may not go back to a host it
// left (fewer with few containers: a quarter of them, at least 1): long
// enough that the search cannot undo a step at once and cycle, short
// enough that it is not left with nothing to do.
const tabuTenure = 10

// tabuBudget bounds the tabu search in candidate moves judged (about
// 0.3 s): near-full hosts in two dimensions make it a bin-packing problem,
// and past this it stops and reports the containers it could not fit
// rather than run for minutes.
const tabuBudget = 10_000_000

func (s *state) totalViolation(dest []bool) float64 {
	v := 0.0
	for h := range s.hosts {
		if dest[h] {
			v += s.violation(h)
		}
	}
	return v
}

// repair is a tabu search that removes capacity violations among the
// destination hosts by relocating a movable container off an overloaded
// host, or swapping it with a movable container elsewhere. Each step makes
// the best move that is not tabu, even one that makes things worse, which
// is what lets it leave a local minimum; a tabu move is allowed when it
// beats the best state seen (aspiration). Ties go to the lower sum of
// squared loads, then to the first in name order. It ends in the best
// state seen and returns the number of steps taken.
func (s *state) repair(movable, dest []bool, budget int) int {
	v := s.totalViolation(dest)
	bestV := v
	bestAt := s.snapshot()
	// What is tabu is a container going back to a host it just left:
	// forbidding the container outright stalls a search with few of
	// them, and forbidding nothing lets it shuttle one container
	// between two equally bad hosts forever.
	nh := len(s.hosts)
	tabuUntil := make([]int, len(s.cons)*nh)
	on := make([][]int, len(s.hosts))
	step := 0
	n := 0
	for i := range movable {
		if movable[i] {
			n++
		}
	}
	tenure := min(tabuTenure, max(1, n/4))
	// Patience: steps without a new best before giving up, so that an
	// infeasible input with few containers does not use the whole budget.
	patience, lastBest := 100+10*n, 0
	for ; v > 0 && budget > 0 && step-lastBest < patience; step++ {
		for h := range on {
			on[h] = on[h][:0]
		}
		for i, c := range s.cons {
			if movable[i] && c.host >= 0 {
				on[c.host] = append(on[c.host], i)
			}
		}
		type cand struct {
			i, j, d, src int
			dv, dsq      float64
		}
		best, bestTabu := cand{i: -1}, cand{i: -1}
		consider := func(c cand) {
			budget--
			b := &best
			if tabuUntil[c.i*nh+c.d] > step || (c.j >= 0 && tabuUntil[c.j*nh+c.src] > step) {
				if v+c.dv >= bestV-improveEps {
					b = &bestTabu
				}
			}
			if b.i < 0 || c.dv < b.dv-improveEps || (c.dv <= b.dv+improveEps && c.dsq < b.dsq-improveEps) {
				*b = c
			}
		}
		for src := range s.hosts {
			vs := s.violation(src)
			if !dest[src] || vs == 0 {
				continue
			}
			ls := s.load(src)
			for _, i := range on[src] {
				ci := s.cons[i]
				vsOut := s.violationOf(src, s.cpu[src]-ci.cpu, s.mem[src]-ci.mem)
				lsOut := s.loadWith(src, i, -1)
				for d := range s.hosts {
					if d == src || !dest[d] {
						continue
					}
					vd, ld := s.violation(d), s.load(d)
					consider(cand{i: i, j: -1, d: d, src: src,
						dv:  vsOut - vs + s.violationWith(d, i) - vd,
						dsq: lsOut*lsOut - ls*ls + sq(s.loadWith(d, i, 1)) - ld*ld})
					for _, j := range on[d] {
						cj := s.cons[j]
						if cj.cpu >= ci.cpu && cj.mem >= ci.mem {
							continue // cannot lower src's overflow
						}
						sc, sm := s.cpu[src]-ci.cpu+cj.cpu, s.mem[src]-ci.mem+cj.mem
						dc, dm := s.cpu[d]-cj.cpu+ci.cpu, s.mem[d]-cj.mem+ci.mem
						consider(cand{i: i, j: j, d: d, src: src,
							dv:  s.violationOf(src, sc, sm) - vs + s.violationOf(d, dc, dm) - vd,
							dsq: sq(s.share(src, sc, sm)) - ls*ls + sq(s.share(d, dc, dm)) - ld*ld})
					}
				}
			}
		}
		if best.i < 0 {
			// Every move is tabu (few containers to move): take the best
			// of them rather than stop.
			best = bestTabu
		}
		if best.i < 0 {
			break
		}
		src := s.cons[best.i].host
		s.assign(best.i, best.d)
		tabuUntil[best.i*nh+src] = step + 1 + tenure
		if best.j >= 0 {
			s.assign(best.j, src)
			tabuUntil[best.j*nh+best.d] = step + 1 + tenure
		}
		v = s.totalViolation(dest)
		if v < bestV-improveEps {
			bestV, bestAt, lastBest = v, s.snapshot(), step
		}
	}
	s.restore(bestAt)
	return step
}

func sq(x float64) float64 { return x * x }

type snapshot struct {
	host []int
	cpu  []float64
	mem  []int64
	n    []int
}

func (s *state) snapshot() snapshot {
	sn := snapshot{host: make([]int, len(s.cons))}
	for i, c := range s.cons {
		sn.host[i] = c.host
	}
	sn.cpu = append([]float64(nil), s.cpu...)
	sn.mem = append([]int64(nil), s.mem...)
	sn.n = append([]int(nil), s.count...)
	return sn
}

func (s *state) restore(sn snapshot) {
	for i := range s.cons {
		s.cons[i].host = sn.host[i]
	}
	copy(s.cpu, sn.cpu)
	copy(s.mem, sn.mem)
	copy(s.count, sn.n)
}
