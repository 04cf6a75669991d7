package placement

// loadSummary is what judging a move against the imbalance needs: the sum
// of the schedulable hosts' loads and the three highest (two hosts change
// per move, so the max of the others is among the top three).
type loadSummary struct {
	n     int
	sum   float64
	sumSq float64
	top   [3]int // host indices, highest load first; -1 when fewer hosts
	loads []float64
}

func (s *state) summary() loadSummary {
	x := loadSummary{top: [3]int{-1, -1, -1}, loads: make([]float64, len(s.hosts))}
	for h := range s.hosts {
		if !s.hosts[h].sched {
			continue
		}
		l := s.load(h)
		x.loads[h] = l
		x.n++
		x.sum += l
		x.sumSq += l * l
		for k := 0; k < 3; k++ {
			if x.top[k] < 0 || l > x.loads[x.top[k]] {
				copy(x.top[k+1:], x.top[k:2])
				x.top[k] = h
				break
			}
		}
	}
	return x
}

func (x *loadSummary) imbalance() float64 {
	if x.top[0] < 0 {
		return 1
	}
	return ratio(x.loads[x.top[0]], x.sum, x.n)
}

// after is the imbalance and sum of squared loads once hosts a and b
// (schedulable, distinct) have loads la and lb.
func (x *loadSummary) after(a, b int, la, lb float64) (imb, sumSq float64) {
	mx := max(la, lb)
	for _, h := range x.top {
		if h >= 0 && h != a && h != b {
			mx = max(mx, x.loads[h])
			break
		}
	}
	oa, ob := x.loads[a], x.loads[b]
	sum := x.sum - oa - ob + la + lb
	sumSq = x.sumSq - oa*oa - ob*ob + la*la + lb*lb
	return ratio(mx, sum, x.n), sumSq
}

const improveEps = 1e-12

// better orders candidates by imbalance, then by sum of squared loads: the
// second makes progress when several hosts share the max, where moving
// from one of them leaves the max where it is.
func better(imb, sq, bImb, bSq float64) bool {
	if imb < bImb-improveEps {
		return true
	}
	return imb <= bImb+improveEps && sq < bSq-improveEps
}

// balance is a descent on (imbalance, sum of squared loads) that moves
// only containers marked movable and never puts a host over capacity.
// Each round looks at the most loaded host, the one that sets the
// imbalance, and makes the best move off it: relocating one of its movable
// containers, or swapping one with a smaller movable container elsewhere.
// It stops when that host has no improving move (or after maxRounds): the
// imbalance can then only be lowered by moving several containers at
// once, which is what Rebalance's search is for. It returns the number of
// moves made.
func (s *state) balance(movable []bool, maxRounds int) int {
	steps := 0
	on := make([][]int, len(s.hosts))
	for r := 0; r < maxRounds; r++ {
		x := s.summary()
		if x.top[0] < 0 {
			break
		}
		for h := range on {
			on[h] = on[h][:0]
		}
		for i, c := range s.cons {
			if movable[i] && c.host >= 0 && s.hosts[c.host].sched {
				on[c.host] = append(on[c.host], i)
			}
		}
		if !s.improveFrom(x.top[0], &x, on) {
			break
		}
		steps++
	}
	return steps
}

// improveFrom makes the best improving move off host src, if any.
func (s *state) improveFrom(src int, x *loadSummary, on [][]int) bool {
	bImb, bSq := x.imbalance(), x.sumSq
	bi, bj, bd := -1, -1, -1
	ls := x.loads[src]
	for _, i := range on[src] {
		lsOut := s.loadWith(src, i, -1)
		ci := s.cons[i]
		for d := range s.hosts {
			// A host at least as loaded as src would end above it.
			if d == src || !s.hosts[d].sched || x.loads[d] >= ls {
				continue
			}
			if s.fits(i, d) {
				imb, sq := x.after(src, d, lsOut, s.loadWith(d, i, 1))
				if better(imb, sq, bImb, bSq) {
					bImb, bSq, bi, bj, bd = imb, sq, i, -1, d
				}
			}
			// Swaps: taking a smaller container back can make room that
			// a plain relocation cannot find.
			for _, j := range on[d] {
				cj := s.cons[j]
				if cj.cpu >= ci.cpu && cj.mem >= ci.mem {
					continue // cannot lower src's load
				}
				sc, sm := s.cpu[src]-ci.cpu+cj.cpu, s.mem[src]-ci.mem+cj.mem
				dc, dm := s.cpu[d]-cj.cpu+ci.cpu, s.mem[d]-cj.mem+ci.mem
				if !s.within(src, sc, sm) || !s.within(d, dc, dm) {
					continue
				}
				nl := s.share(src, sc, sm)
				if nl >= ls {
					continue
				}
				imb, sq := x.after(src, d, nl, s.share(d, dc, dm))
				if better(imb, sq, bImb, bSq) {
					bImb, bSq, bi, bj, bd = imb, sq, i, j, d
				}
			}
		}
	}
	if bi < 0 {
		return false
	}
	s.assign(bi, bd)
	if bj >= 0 {
		s.assign(bj, src)
	}
	return true
}
