package placement

import (
	"fmt"
	"strconv"
)

// Place picks a host for one new container c: of the schedulable hosts
// where it fits, the one with the most room left after placing it (the
// lowest load), then the one running fewer containers (so containers with
// negligible requests spread out instead of piling on one host), then the
// first by name. c.Host is ignored. If none fits, the error is an
// *UnplacedError that names c and says whether it is too big for every
// host or every host is too full.
func Place(hosts []Host, containers []Container, c Container) (string, error) {
	c.Host = ""
	st, err := newState(hosts, append(containers[:len(containers):len(containers)], c))
	if err != nil {
		return "", err
	}
	if len(st.schedulable()) == 0 {
		return "", fmt.Errorf("place container %s: %w", c.Name, ErrNoSchedulableHost)
	}
	i := st.index(c.Name)
	h := st.spread(i)
	if h < 0 {
		return "", &UnplacedError{Unplaced: []Unplaced{{Container: c.Name, Reason: st.whyNot(i, "")}}}
	}
	return st.hosts[h].name, nil
}

func (s *state) index(name string) int {
	lo, hi := 0, len(s.cons)
	for lo < hi {
		m := (lo + hi) / 2
		if s.cons[m].name < name {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// spread is the schedulable host where container i fits with the lowest
// load after, fewer containers, then name; -1 if it fits nowhere. Lowest
// load rather than tightest fit: the planner's second aim is balance, and
// leaving every host some room keeps the next container placeable.
func (s *state) spread(i int) int {
	best, bestLoad := -1, 0.0
	for h := range s.hosts {
		if !s.hosts[h].sched || h == s.cons[i].host || !s.fits(i, h) {
			continue
		}
		l := s.loadWith(h, i, 1)
		if best < 0 || l < bestLoad || (l == bestLoad && s.count[h] < s.count[best]) {
			best, bestLoad = h, l
		}
	}
	return best
}

// pack is the schedulable host where container i fits most tightly
// (highest load after), for when spreading leaves a large container with
// nowhere to go.
func (s *state) pack(i int) int {
	best, bestLoad := -1, 0.0
	for h := range s.hosts {
		if !s.hosts[h].sched || h == s.cons[i].host || !s.fits(i, h) {
			continue
		}
		l := s.loadWith(h, i, 1)
		if best < 0 || l > bestLoad {
			best, bestLoad = h, l
		}
	}
	return best
}

// whyNot explains why container i fits on no schedulable host (other
// than skip): none is big enough even empty, or none has that much free.
func (s *state) whyNot(i int, skip string) string {
	c := s.cons[i]
	need := fmt.Sprintf("requests %s CPUs and %s memory", fmtCPU(c.cpu), fmtBytes(c.mem))
	other := "schedulable host"
	if skip != "" {
		other = "other schedulable host"
	}
	bigCPU, bigMem, freeCPU, freeMem := -1, -1, -1, -1
	anyBig := false
	for h := range s.hosts {
		if !s.hosts[h].sched || s.hosts[h].name == skip {
			continue
		}
		if s.fitsEmpty(i, h) {
			anyBig = true
		}
		if bigCPU < 0 || s.hosts[h].cpu > s.hosts[bigCPU].cpu {
			bigCPU = h
		}
		if bigMem < 0 || s.hosts[h].mem > s.hosts[bigMem].mem {
			bigMem = h
		}
		if freeCPU < 0 || s.hosts[h].cpu-s.cpu[h] > s.hosts[freeCPU].cpu-s.cpu[freeCPU] {
			freeCPU = h
		}
		if freeMem < 0 || s.hosts[h].mem-s.mem[h] > s.hosts[freeMem].mem-s.mem[freeMem] {
			freeMem = h
		}
	}
	if bigCPU < 0 {
		return fmt.Sprintf("%s: there is no %s", need, other)
	}
	if !anyBig {
		return fmt.Sprintf("%s: too big for every %s (largest: %s CPUs on %s, %s memory on %s)", need, other,
			fmtCPU(s.hosts[bigCPU].cpu), s.hosts[bigCPU].name, fmtBytes(s.hosts[bigMem].mem), s.hosts[bigMem].name)
	}
	return fmt.Sprintf("%s: no %s has that much free (most free: %s CPUs on %s, %s memory on %s)", need, other,
		fmtCPU(max(0, s.hosts[freeCPU].cpu-s.cpu[freeCPU])), s.hosts[freeCPU].name,
		fmtBytes(max(0, s.hosts[freeMem].mem-s.mem[freeMem])), s.hosts[freeMem].name)
}

func fmtCPU(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }

func fmtBytes(b int64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit && exp < 4; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTP"[exp])
}
