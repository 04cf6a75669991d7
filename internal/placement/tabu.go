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

// tabuTenure is how many steps a moved container may not move again: long
// enough that the search cannot undo a step at once and cycle, short
// enough that few containers are frozen at any time.
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
	tabuUntil := make([]int, len(s.cons))
	on := make([][]int, len(s.hosts))
	step := 0
	for ; v > 0 && budget > 0; step++ {
		for h := range on {
			on[h] = on[h][:0]
		}
		for i, c := range s.cons {
			if movable[i] && c.host >= 0 {
				on[c.host] = append(on[c.host], i)
			}
		}
		type cand struct {
			i, j, d int
			dv, dsq float64
		}
		best := cand{i: -1}
		consider := func(c cand) {
			budget--
			tabu := tabuUntil[c.i] > step || (c.j >= 0 && tabuUntil[c.j] > step)
			if tabu && v+c.dv >= bestV-improveEps {
				return
			}
			if best.i < 0 || c.dv < best.dv-improveEps || (c.dv <= best.dv+improveEps && c.dsq < best.dsq-improveEps) {
				best = c
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
					consider(cand{i: i, j: -1, d: d,
						dv:  vsOut - vs + s.violationWith(d, i) - vd,
						dsq: lsOut*lsOut - ls*ls + sq(s.loadWith(d, i, 1)) - ld*ld})
					for _, j := range on[d] {
						cj := s.cons[j]
						if cj.cpu >= ci.cpu && cj.mem >= ci.mem {
							continue // cannot lower src's overflow
						}
						sc, sm := s.cpu[src]-ci.cpu+cj.cpu, s.mem[src]-ci.mem+cj.mem
						dc, dm := s.cpu[d]-cj.cpu+ci.cpu, s.mem[d]-cj.mem+ci.mem
						consider(cand{i: i, j: j, d: d,
							dv:  s.violationOf(src, sc, sm) - vs + s.violationOf(d, dc, dm) - vd,
							dsq: sq(s.share(src, sc, sm)) - ls*ls + sq(s.share(d, dc, dm)) - ld*ld})
					}
				}
			}
		}
		if best.i < 0 {
			break
		}
		src := s.cons[best.i].host
		s.assign(best.i, best.d)
		tabuUntil[best.i] = step + 1 + tabuTenure
		if best.j >= 0 {
			s.assign(best.j, src)
			tabuUntil[best.j] = step + 1 + tabuTenure
		}
		v = s.totalViolation(dest)
		if v < bestV-improveEps {
			bestV, bestAt = v, s.snapshot()
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
