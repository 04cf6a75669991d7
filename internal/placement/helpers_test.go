package placement

import (
	"math"
	"testing"
)

const gib = int64(1) << 30

func host(name string, cpus float64, memGiB int64) Host {
	return Host{Name: name, CPUs: cpus, MemoryBytes: memGiB * gib}
}

func ctr(name string, cpus float64, memGiB int64, on string) Container {
	return Container{Name: name, CPUs: cpus, MemoryBytes: memGiB * gib, Host: on}
}

// replay executes a plan step by step, independently of the planner's
// code, and fails the test on a step that is not runnable: a container not
// where From says, a destination unknown or unschedulable (or the host
// being evacuated), a destination pushed over capacity, a container moved
// twice. It returns where every container ends.
func replay(t *testing.T, hosts []Host, cs []Container, p Plan, evacuating string) map[string]string {
	t.Helper()
	hs := map[string]Host{}
	for _, h := range hosts {
		hs[h.Name] = h
	}
	where := map[string]string{}
	req := map[string]Container{}
	cpu := map[string]float64{}
	mem := map[string]int64{}
	for _, c := range cs {
		where[c.Name], req[c.Name] = c.Host, c
		cpu[c.Host] += c.CPUs
		mem[c.Host] += c.MemoryBytes
	}
	moved := map[string]bool{}
	for k, m := range p.Moves {
		c, ok := req[m.Container]
		if !ok {
			t.Fatalf("step %d %v: unknown container", k, m)
		}
		if where[m.Container] != m.From {
			t.Fatalf("step %d %v: the container is on %q", k, m, where[m.Container])
		}
		if moved[m.Container] {
			t.Fatalf("step %d %v: moved twice", k, m)
		}
		moved[m.Container] = true
		h, ok := hs[m.To]
		if !ok || h.Unschedulable || m.To == evacuating || m.To == m.From {
			t.Fatalf("step %d %v: not a valid destination", k, m)
		}
		cpu[m.From] -= c.CPUs
		mem[m.From] -= c.MemoryBytes
		cpu[m.To] += c.CPUs
		mem[m.To] += c.MemoryBytes
		if cpu[m.To] > h.CPUs*(1+1e-9) || mem[m.To] > h.MemoryBytes {
			t.Fatalf("step %d %v: %s over capacity (%.3f/%v CPUs, %d/%d bytes)", k, m, m.To, cpu[m.To], h.CPUs, mem[m.To], h.MemoryBytes)
		}
		where[m.Container] = m.To
	}
	return where
}

// imbalanceOf recomputes max/mean dominant share over the schedulable
// hosts (minus skip) for the given placement.
func imbalanceOf(hosts []Host, cs []Container, where map[string]string, skip string) float64 {
	cpu := map[string]float64{}
	mem := map[string]int64{}
	for _, c := range cs {
		cpu[where[c.Name]] += c.CPUs
		mem[where[c.Name]] += c.MemoryBytes
	}
	var sum, mx float64
	n := 0
	for _, h := range hosts {
		if h.Unschedulable || h.Name == skip {
			continue
		}
		l := math.Max(cpu[h.Name]/h.CPUs, float64(mem[h.Name])/float64(h.MemoryBytes))
		sum += l
		mx = math.Max(mx, l)
		n++
	}
	if n == 0 || sum == 0 {
		return 1
	}
	return mx / (sum / float64(n))
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }
