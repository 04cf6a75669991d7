package placebench

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/containerflow/containerflow/internal/placement"
)

const gib = int64(1) << 30

// Generate builds hosts of mixed sizes and shapes and containers whose
// requests were cut from a hidden assignment filling every host to fill in
// both CPU and memory: so a feasible placement is known to exist (the one
// thrown away) and so does a perfectly balanced one (imbalance 1), which
// is what the planner's result can be judged against. The containers come
// unplaced, named in an order unrelated to the hidden hosts.
func Generate(hosts, containers int, fill float64, seed uint64) ([]placement.Host, []placement.Container, error) {
	if hosts < 1 || containers < 1 {
		return nil, nil, fmt.Errorf("need at least one host and one container (got %d, %d)", hosts, containers)
	}
	if !(fill > 0 && fill <= 1) {
		return nil, nil, fmt.Errorf("fill %v: must be in (0, 1]", fill)
	}
	rng := rand.New(rand.NewPCG(seed, 0x706c616365)) // "place"
	cpus := []float64{8, 16, 32, 64}
	gibPerCPU := []int64{2, 4, 8}
	hs := make([]placement.Host, hosts)
	width := len(fmt.Sprint(hosts - 1))
	totalCPU := 0.0
	for h := range hs {
		c := cpus[rng.IntN(len(cpus))]
		hs[h] = placement.Host{
			Name:        fmt.Sprintf("host%0*d", width, h),
			CPUs:        c,
			MemoryBytes: int64(c) * gibPerCPU[rng.IntN(len(gibPerCPU))] * gib,
		}
		totalCPU += c
	}
	// Containers per host in proportion to its CPUs (largest remainder),
	// so big hosts hold more containers rather than giant ones.
	counts := make([]int, hosts)
	rem := make([]float64, hosts)
	left := containers
	for h := range hs {
		exact := float64(containers) * hs[h].CPUs / totalCPU
		counts[h] = int(exact)
		rem[h] = exact - float64(counts[h])
		left -= counts[h]
	}
	for ; left > 0; left-- {
		best := 0
		for h := range rem {
			if rem[h] > rem[best] {
				best = h
			}
		}
		counts[best]++
		rem[best] = -1
	}
	var cs []placement.Container
	for h := range hs {
		k := counts[h]
		if k == 0 {
			continue
		}
		wc, wm := weights(rng, k), weights(rng, k)
		for i := 0; i < k; i++ {
			// Rounded down (millicores, MiB) so the hidden assignment
			// stays within capacity.
			cpu := math.Floor(fill*hs[h].CPUs*wc[i]*1000) / 1000
			mem := int64(fill*float64(hs[h].MemoryBytes)*wm[i]) >> 20 << 20
			cs = append(cs, placement.Container{CPUs: cpu, MemoryBytes: mem})
		}
	}
	rng.Shuffle(len(cs), func(i, j int) { cs[i], cs[j] = cs[j], cs[i] })
	cw := len(fmt.Sprint(len(cs) - 1))
	for i := range cs {
		cs[i].Name = fmt.Sprintf("c%0*d", cw, i)
	}
	return hs, cs, nil
}

// weights are k shares summing to 1, uneven (exponential draws): a few
// large containers among many small ones, as in practice.
func weights(rng *rand.Rand, k int) []float64 {
	w := make([]float64, k)
	sum := 0.0
	for i := range w {
		w[i] = rng.ExpFloat64() + 0.05
		sum += w[i]
	}
	for i := range w {
		w[i] /= sum
	}
	return w
}
