package placement

import (
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// TestPropertyEvacuate: random clusters, a random host emptied. The plan
// replays within capacity, accounts for every container of the host
// (moved or unplaced with a reason), errors are the documented ones, and
// shuffled input gives the same plan. Where a brute force finds room for
// everything, so must the planner (true of these small cases; on large
// nearly full ones it is a bin-packing search with a budget).
func TestPropertyEvacuate(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 1))
	missed, feasible := 0, 0
	for n := 0; n < 400; n++ {
		hosts, cs := randomCase(rng, 4, 8)
		victim := hosts[rng.IntN(len(hosts))].Name
		p, err := Evacuate(hosts, cs, victim)
		var on []string
		for _, c := range cs {
			if c.Host == victim {
				on = append(on, c.Name)
			}
		}
		others := 0
		for _, h := range hosts {
			if !h.Unschedulable && h.Name != victim {
				others++
			}
		}
		if errors.Is(err, ErrNoSchedulableHost) {
			if others > 0 || len(on) == 0 {
				t.Fatalf("case %d: %v with %d other hosts and %d containers", n, err, others, len(on))
			}
			continue
		}
		var u *UnplacedError
		if err != nil && !errors.As(err, &u) {
			t.Fatalf("case %d: %v", n, err)
		}
		if (err != nil) != (len(p.Unplaced) > 0) || p.Reached != (len(p.Unplaced) == 0) {
			t.Fatalf("case %d: err %v with plan %+v", n, err, p)
		}
		where := replay(t, hosts, cs, p, victim)
		accounted := map[string]bool{}
		for _, m := range p.Moves {
			accounted[m.Container] = true
		}
		for _, x := range p.Unplaced {
			if x.Reason == "" || where[x.Container] != victim {
				t.Fatalf("case %d: unplaced %+v", n, x)
			}
			accounted[x.Container] = true
		}
		if len(accounted) != len(on) {
			t.Fatalf("case %d: %d containers on %s, %d accounted for", n, len(on), victim, len(accounted))
		}
		if got := imbalanceOf(hosts, cs, where, victim); !near(p.ImbalanceAfter, got) {
			t.Fatalf("case %d: after %v, recount %v", n, p.ImbalanceAfter, got)
		}
		if bruteFits(hosts, cs, victim) {
			feasible++
			if len(p.Unplaced) > 0 {
				missed++
			}
		}
		h2, c2 := shuffled(rng, hosts, cs)
		if p2, _ := Evacuate(h2, c2, victim); !reflect.DeepEqual(p, p2) {
			t.Fatalf("case %d: shuffled input gave %+v, not %+v", n, p2, p)
		}
	}
	t.Logf("evacuations where everything could fit: %d, planner left some behind in %d", feasible, missed)
	if missed > 0 {
		t.Errorf("Evacuate left containers behind in %d feasible small cases", missed)
	}
}

// bruteFits: the containers on victim can all go to other schedulable
// hosts without moving anything else.
func bruteFits(hosts []Host, cs []Container, victim string) bool {
	var sched []Host
	for _, h := range hosts {
		if !h.Unschedulable && h.Name != victim {
			sched = append(sched, h)
		}
	}
	cpu := make([]float64, len(sched))
	mem := make([]int64, len(sched))
	var todo []Container
	for _, c := range cs {
		if c.Host == victim {
			todo = append(todo, c)
			continue
		}
		for k, h := range sched {
			if h.Name == c.Host {
				cpu[k] += c.CPUs
				mem[k] += c.MemoryBytes
			}
		}
	}
	var rec func(i int) bool
	rec = func(i int) bool {
		if i == len(todo) {
			return true
		}
		c := todo[i]
		for k, h := range sched {
			if cpu[k]+c.CPUs <= h.CPUs*(1+1e-9) && mem[k]+c.MemoryBytes <= h.MemoryBytes {
				cpu[k] += c.CPUs
				mem[k] += c.MemoryBytes
				ok := rec(i + 1)
				cpu[k] -= c.CPUs
				mem[k] -= c.MemoryBytes
				if ok {
					return true
				}
			}
		}
		return false
	}
	return rec(0)
}

// TestPropertyPlaceAll: random clusters, the unplaced containers placed
// at once. The plan replays within capacity, accounts for every unplaced
// container, and shuffled input gives the same plan. Where a brute force
// fits everything, so must the planner.
func TestPropertyPlaceAll(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 1))
	missed, feasible := 0, 0
	for n := 0; n < 400; n++ {
		hosts, cs := randomCase(rng, 4, 8)
		for i := range cs {
			if rng.IntN(2) == 0 {
				cs[i].Host = ""
			}
		}
		p, err := PlaceAll(hosts, cs)
		var todo int
		for _, c := range cs {
			if c.Host == "" {
				todo++
			}
		}
		sched := false
		for _, h := range hosts {
			sched = sched || !h.Unschedulable
		}
		if errors.Is(err, ErrNoSchedulableHost) {
			if sched || todo == 0 {
				t.Fatalf("case %d: %v", n, err)
			}
			continue
		}
		var u *UnplacedError
		if err != nil && !errors.As(err, &u) {
			t.Fatalf("case %d: %v", n, err)
		}
		replay(t, hosts, cs, p, "")
		if len(p.Moves)+len(p.Unplaced) != todo {
			t.Fatalf("case %d: %d to place, %d placed, %d unplaced", n, todo, len(p.Moves), len(p.Unplaced))
		}
		// A fresh cluster with the placed containers on a pseudo-host
		// that is then "evacuated" is the same question as placing them.
		pseudo := append(slices.Clone(hosts), Host{Name: "\x00new", CPUs: math.MaxFloat64 / 4, MemoryBytes: math.MaxInt64 / 4, Unschedulable: true})
		pcs := slices.Clone(cs)
		for i := range pcs {
			if pcs[i].Host == "" {
				pcs[i].Host = "\x00new"
			}
		}
		if todo > 0 && bruteFits(pseudo, pcs, "\x00new") {
			feasible++
			if len(p.Unplaced) > 0 {
				missed++
			}
		}
		h2, c2 := shuffled(rng, hosts, cs)
		if p2, _ := PlaceAll(h2, c2); !reflect.DeepEqual(p, p2) {
			t.Fatalf("case %d: shuffled input gave %+v, not %+v", n, p2, p)
		}
	}
	t.Logf("placements where everything could fit: %d, planner left some out in %d", feasible, missed)
	if missed > 0 {
		t.Errorf("PlaceAll left containers out of %d feasible small cases", missed)
	}
}

// TestPropertyPlace: the chosen host is schedulable, has room, and no
// host with room would be less loaded after; an error only when no
// schedulable host has room.
func TestPropertyPlace(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 1))
	for n := 0; n < 400; n++ {
		hosts, cs := randomCase(rng, 5, 8)
		c := Container{Name: "new", CPUs: []float64{0, 0.5, 1, 2, 4}[rng.IntN(5)], MemoryBytes: []int64{0, gib / 2, gib, 4 * gib}[rng.IntN(4)]}
		got, err := Place(hosts, cs, c)
		where := map[string]string{}
		for _, x := range cs {
			where[x.Name] = x.Host
		}
		bestLoad, fitting := math.Inf(1), 0
		var gotLoad float64
		for _, h := range hosts {
			if h.Unschedulable {
				continue
			}
			var cpu float64
			var mem int64
			for _, x := range cs {
				if x.Host == h.Name {
					cpu += x.CPUs
					mem += x.MemoryBytes
				}
			}
			if cpu+c.CPUs > h.CPUs*(1+1e-9) || mem+c.MemoryBytes > h.MemoryBytes {
				continue
			}
			fitting++
			l := math.Max((cpu+c.CPUs)/h.CPUs, float64(mem+c.MemoryBytes)/float64(h.MemoryBytes))
			bestLoad = math.Min(bestLoad, l)
			if h.Name == got {
				gotLoad = l
			}
		}
		if err != nil {
			if fitting > 0 {
				t.Fatalf("case %d: %v, but %d hosts have room", n, err, fitting)
			}
			continue
		}
		if fitting == 0 || gotLoad != bestLoad {
			t.Fatalf("case %d: %s (load after %v), best %v", n, got, gotLoad, bestLoad)
		}
		h2, c2 := shuffled(rng, hosts, cs)
		if got2, _ := Place(h2, c2, c); got2 != got {
			t.Fatalf("case %d: shuffled input gave %s, not %s", n, got2, got)
		}
	}
}
