package placebench

import (
	"math/rand/v2"
	"slices"

	"github.com/containerflow/containerflow/internal/placement"
)

// skew makes a fraction of the hosts hot: each, in turn, takes the largest
// containers from elsewhere that still fit until it is 97% full. It
// returns the skewed containers, the number of hot hosts and the moves
// that made them (an upper bound for what a rebalance needs: undoing them).
func skew(hosts []placement.Host, cs []placement.Container, frac float64, seed uint64) ([]placement.Container, int, int) {
	out := slices.Clone(cs)
	rng := rand.New(rand.NewPCG(seed, 0x736b6577)) // "skew"
	n := max(1, int(frac*float64(len(hosts))+0.5))
	order := rng.Perm(len(hosts))[:n]
	hot := map[string]bool{}
	for _, h := range order {
		hot[hosts[h].Name] = true
	}
	moves := 0
	for _, hi := range order {
		h := hosts[hi]
		cpu, mem := usage(out, h.Name)
		idx := rng.Perm(len(out))
		for _, i := range idx {
			c := out[i]
			if c.Host == "" || hot[c.Host] {
				continue
			}
			if max(cpu/h.CPUs, float64(mem)/float64(h.MemoryBytes)) >= 0.97 {
				break
			}
			if cpu+c.CPUs > h.CPUs || mem+c.MemoryBytes > h.MemoryBytes {
				continue
			}
			out[i].Host = h.Name
			cpu += c.CPUs
			mem += c.MemoryBytes
			moves++
		}
	}
	return out, n, moves
}

func usage(cs []placement.Container, host string) (float64, int64) {
	var cpu float64
	var mem int64
	for _, c := range cs {
		if c.Host == host {
			cpu += c.CPUs
			mem += c.MemoryBytes
		}
	}
	return cpu, mem
}

func busiestHost(hosts []placement.Host, cs []placement.Container) string {
	n := map[string]int{}
	for _, c := range cs {
		n[c.Host]++
	}
	best := hosts[0].Name
	for _, h := range hosts {
		if n[h.Name] > n[best] {
			best = h.Name
		}
	}
	return best
}

// execute returns the containers after the plan's moves.
func execute(cs []placement.Container, p placement.Plan) []placement.Container {
	out := slices.Clone(cs)
	at := map[string]int{}
	for i, c := range out {
		at[c.Name] = i
	}
	for _, m := range p.Moves {
		out[at[m.Container]].Host = m.To
	}
	return out
}

// Violations executes the plan step by step on its own sums and counts
// the bad steps: one that puts its destination over capacity (float slack
// as the planner's: 1e-9 of the CPUs), moves a container from where it is
// not, or goes to an unknown or unschedulable host. A host can only end
// over capacity by such a step.
func Violations(hosts []placement.Host, cs []placement.Container, p placement.Plan) int {
	hs := map[string]placement.Host{}
	for _, h := range hosts {
		hs[h.Name] = h
	}
	at := map[string]placement.Container{}
	cpu := map[string]float64{}
	mem := map[string]int64{}
	for _, c := range cs {
		at[c.Name] = c
		if c.Host != "" {
			cpu[c.Host] += c.CPUs
			mem[c.Host] += c.MemoryBytes
		}
	}
	over := func(h string) bool {
		return cpu[h] > hs[h].CPUs*(1+1e-9) || mem[h] > hs[h].MemoryBytes
	}
	bad := 0
	for _, m := range p.Moves {
		c, ok := at[m.Container]
		if !ok || c.Host != m.From || hs[m.To].Name == "" || hs[m.To].Unschedulable {
			bad++
			continue
		}
		if c.Host != "" {
			cpu[c.Host] -= c.CPUs
			mem[c.Host] -= c.MemoryBytes
		}
		cpu[m.To] += c.CPUs
		mem[m.To] += c.MemoryBytes
		c.Host = m.To
		at[m.Container] = c
		if over(m.To) {
			bad++
		}
	}
	return bad
}
