package placement

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// capSlack absorbs float rounding in CPU sums: 0.1+0.2 cores must fit in
// 0.3. Memory is counted in whole bytes and needs none.
const capSlack = 1e-9

type hostS struct {
	name  string
	cpu   float64
	mem   int64
	sched bool
}

type conS struct {
	name string
	cpu  float64
	mem  int64
	host int // index into state.hosts; -1 when not placed
}

// state is the input sorted by name, with per-host sums kept up to date as
// containers are assigned, so a candidate move costs O(1) to judge.
type state struct {
	hosts  []hostS
	cons   []conS
	cpu    []float64 // sum of CPU requests per host
	mem    []int64   // sum of memory requests per host
	count  []int     // containers per host
	byName map[string]int
}

func newState(hosts []Host, containers []Container) (*state, error) {
	s := &state{byName: make(map[string]int, len(hosts))}
	for _, h := range hosts {
		if h.Name == "" {
			return nil, fmt.Errorf("%w: a host has no name", ErrInvalid)
		}
		if !(h.CPUs > 0) || math.IsInf(h.CPUs, 0) || h.MemoryBytes <= 0 {
			return nil, fmt.Errorf("%w: host %s: capacity must be positive (CPUs %v, memory %d bytes)", ErrInvalid, h.Name, h.CPUs, h.MemoryBytes)
		}
		s.hosts = append(s.hosts, hostS{name: h.Name, cpu: h.CPUs, mem: h.MemoryBytes, sched: !h.Unschedulable})
	}
	slices.SortFunc(s.hosts, func(a, b hostS) int { return strings.Compare(a.name, b.name) })
	for i, h := range s.hosts {
		if i > 0 && s.hosts[i-1].name == h.name {
			return nil, fmt.Errorf("%w: host %s listed twice", ErrInvalid, h.name)
		}
		s.byName[h.name] = i
	}
	for _, c := range containers {
		if c.Name == "" {
			return nil, fmt.Errorf("%w: a container has no name", ErrInvalid)
		}
		if !(c.CPUs >= 0) || math.IsInf(c.CPUs, 0) || c.MemoryBytes < 0 {
			return nil, fmt.Errorf("%w: container %s: requests must not be negative (CPUs %v, memory %d bytes)", ErrInvalid, c.Name, c.CPUs, c.MemoryBytes)
		}
		h := -1
		if c.Host != "" {
			i, ok := s.byName[c.Host]
			if !ok {
				return nil, fmt.Errorf("%w: container %s runs on unknown host %s", ErrInvalid, c.Name, c.Host)
			}
			h = i
		}
		s.cons = append(s.cons, conS{name: c.Name, cpu: c.CPUs, mem: c.MemoryBytes, host: h})
	}
	slices.SortFunc(s.cons, func(a, b conS) int { return strings.Compare(a.name, b.name) })
	for i := 1; i < len(s.cons); i++ {
		if s.cons[i-1].name == s.cons[i].name {
			return nil, fmt.Errorf("%w: container %s listed twice", ErrInvalid, s.cons[i].name)
		}
	}
	s.cpu = make([]float64, len(s.hosts))
	s.mem = make([]int64, len(s.hosts))
	s.count = make([]int, len(s.hosts))
	// Summed in name order so the float rounding is the same for any
	// order of the input.
	for _, c := range s.cons {
		if c.host >= 0 {
			s.add(c, c.host)
		}
	}
	return s, nil
}

func (s *state) add(c conS, h int) {
	s.cpu[h] += c.cpu
	s.mem[h] += c.mem
	s.count[h]++
}

func (s *state) remove(c conS, h int) {
	s.cpu[h] -= c.cpu
	s.mem[h] -= c.mem
	s.count[h]--
}

// assign puts container i on host h (-1: nowhere), keeping the sums.
func (s *state) assign(i, h int) {
	c := s.cons[i]
	if c.host >= 0 {
		s.remove(c, c.host)
	}
	if h >= 0 {
		s.add(c, h)
	}
	s.cons[i].host = h
}

// share is the dominant share of the given sums on host h.
func (s *state) share(h int, cpu float64, mem int64) float64 {
	return max(cpu/s.hosts[h].cpu, float64(mem)/float64(s.hosts[h].mem))
}

func (s *state) load(h int) float64 { return s.share(h, s.cpu[h], s.mem[h]) }

// loadWith is h's load with container i added (sign 1) or removed (-1).
func (s *state) loadWith(h, i int, sign int) float64 {
	c := s.cons[i]
	return s.share(h, s.cpu[h]+float64(sign)*c.cpu, s.mem[h]+int64(sign)*c.mem)
}

func (s *state) within(h int, cpu float64, mem int64) bool {
	return cpu <= s.hosts[h].cpu*(1+capSlack) && mem <= s.hosts[h].mem
}

// fits: container i can be added to h without h going over capacity.
func (s *state) fits(i, h int) bool {
	c := s.cons[i]
	return s.within(h, s.cpu[h]+c.cpu, s.mem[h]+c.mem)
}

// fitsEmpty: container i is not larger than h itself.
func (s *state) fitsEmpty(i, h int) bool {
	c := s.cons[i]
	return s.within(h, c.cpu, c.mem)
}

func (s *state) overCapacity(h int) bool { return !s.within(h, s.cpu[h], s.mem[h]) }

func (s *state) schedulable() []int {
	var out []int
	for h := range s.hosts {
		if s.hosts[h].sched {
			out = append(out, h)
		}
	}
	return out
}

// imbalance is max load / mean load over the schedulable hosts; 1 when
// their mean is 0 (nothing runs, or no schedulable host).
func (s *state) imbalance() float64 {
	var sum, mx float64
	n := 0
	for h := range s.hosts {
		if !s.hosts[h].sched {
			continue
		}
		l := s.load(h)
		sum += l
		mx = max(mx, l)
		n++
	}
	return ratio(mx, sum, n)
}

func ratio(mx, sum float64, n int) float64 {
	if n == 0 || sum <= 0 {
		return 1
	}
	return mx / (sum / float64(n))
}

// size orders containers largest first: the dominant share of its
// requests against the mean schedulable host, so that a container large in
// either resource counts as large.
func (s *state) sizer() func(i int) float64 {
	var cpu, mem float64
	n := 0
	for h := range s.hosts {
		if s.hosts[h].sched {
			cpu += s.hosts[h].cpu
			mem += float64(s.hosts[h].mem)
			n++
		}
	}
	if n == 0 {
		return func(int) float64 { return 0 }
	}
	cpu, mem = cpu/float64(n), mem/float64(n)
	return func(i int) float64 {
		return max(s.cons[i].cpu/cpu, float64(s.cons[i].mem)/mem)
	}
}

// largestFirst sorts container indices by size, ties by name (index).
func (s *state) largestFirst(idx []int) {
	size := s.sizer()
	slices.SortStableFunc(idx, func(a, b int) int {
		sa, sb := size(a), size(b)
		switch {
		case sa > sb:
			return -1
		case sa < sb:
			return 1
		}
		return a - b
	})
}

func pos(x float64) float64 { return max(x, 0) }
