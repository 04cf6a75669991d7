package placement

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestPlaceAllHandChecked(t *testing.T) {
	// Two 4-CPU hosts, containers of 3, 2, 2 and 1 CPUs: exactly full.
	// Largest first, each where the load after is lowest:
	//   c3: a 0.75, b 0.75 (tie, name)  -> a
	//   c2: a does not fit (5 > 4)      -> b (0.5)
	//   c2b: a does not fit             -> b (1.0)
	//   c1: a 1.0, b does not fit       -> a
	// Both hosts full, imbalance 1; moves sorted by container name.
	hosts := []Host{host("a", 4, 4), host("b", 4, 4)}
	cs := []Container{ctr("c1", 1, 0, ""), ctr("c2", 2, 0, ""), ctr("c2b", 2, 0, ""), ctr("c3", 3, 0, "")}
	p, st, err := PlaceAllStats(hosts, cs)
	if err != nil {
		t.Fatal(err)
	}
	want := []Move{{Container: "c1", To: "a"}, {Container: "c2", To: "b"}, {Container: "c2b", To: "b"}, {Container: "c3", To: "a"}}
	if !reflect.DeepEqual(p.Moves, want) {
		t.Fatalf("moves %v, want %v", p.Moves, want)
	}
	if !p.Reached || !near(p.ImbalanceAfter, 1) || st.GreedyViolations != 0 {
		t.Errorf("plan %+v, stats %+v", p, st)
	}
	replay(t, hosts, cs, p, "")
}

func TestPlaceAllPackWhenSpreadOverflows(t *testing.T) {
	// Two 10-CPU hosts, 6+4+4+3+3 = 20 CPUs: only {6,4} / {4,3,3} fits.
	// Spreading: 6 -> a, 4 -> b, 4 -> b (0.8 < 1.0), 3 -> a (0.9), and
	// the last 3 overflows either host. Tightest fit: 6 -> a, 4 -> a (1.0),
	// then 4, 3, 3 -> b. So no violation is left.
	hosts := []Host{host("a", 10, 10), host("b", 10, 10)}
	cs := []Container{ctr("c6", 6, 0, ""), ctr("c4", 4, 0, ""), ctr("c4b", 4, 0, ""), ctr("c3", 3, 0, ""), ctr("c3b", 3, 0, "")}
	p, err := PlaceAll(hosts, cs)
	if err != nil {
		t.Fatal(err)
	}
	where := replay(t, hosts, cs, p, "")
	if where["c6"] != "a" || where["c4"] != "a" || where["c3"] != "b" {
		t.Errorf("placement %v", where)
	}
}

func TestRepairTabu(t *testing.T) {
	// Start from a violating state (a: 6+3+3 = 12 of 10 CPUs, b: 4+4) and
	// let the tabu search alone fix it: the only fits are {6,4}/{4,3,3}
	// and it takes a swap (a 3 for a 4 moves a from 12 to 11; then a 3
	// to b), a path through states no better than the start.
	hosts := []Host{host("a", 10, 10), host("b", 10, 10)}
	cs := []Container{ctr("c6", 6, 0, "a"), ctr("c3", 3, 0, "a"), ctr("c3b", 3, 0, "a"), ctr("c4", 4, 0, "b"), ctr("c4b", 4, 0, "b")}
	st, err := newState(hosts, cs)
	if err != nil {
		t.Fatal(err)
	}
	all := []bool{true, true, true, true, true}
	dest := []bool{true, true}
	steps := st.repair(all, dest, tabuBudget)
	if v := st.totalViolation(dest); v != 0 {
		t.Fatalf("violation %v left after %d steps", v, steps)
	}
}

func TestPlaceAllInfeasible(t *testing.T) {
	// 3 CPUs of room (2 on a, 1 on b after x), 4 containers of 1 CPU
	// and one of 5: the 5 is too big for any host, and one of the 1s
	// (which one is a tie) is left with no room. Everything placed fits.
	hosts := []Host{host("a", 2, 4), host("b", 2, 4)}
	cs := []Container{ctr("x", 1, 0, "b"), ctr("n1", 1, 0, ""), ctr("n2", 1, 0, ""), ctr("n3", 1, 0, ""), ctr("n4", 1, 0, ""), ctr("huge", 5, 0, "")}
	p, err := PlaceAll(hosts, cs)
	var u *UnplacedError
	if !errors.As(err, &u) || len(u.Unplaced) != 2 {
		t.Fatalf("err %v: want two unplaced", err)
	}
	if len(p.Moves) != 3 || p.Reached || len(p.Unplaced) != 2 {
		t.Fatalf("plan %+v: want 3 placed, 2 unplaced", p)
	}
	msg := err.Error()
	if !strings.Contains(msg, "container huge: requests 5 CPUs and 0 B memory: too big for every schedulable host") ||
		!strings.Contains(msg, "requests 1 CPUs and 0 B memory: no schedulable host has that much free (most free: 0 CPUs on a, 4.0 GiB memory on a) once the others are placed") {
		t.Errorf("error %q does not say which and why", msg)
	}
	replay(t, hosts, cs, p, "")
}

func TestPlaceAllKeepsPlacedAndSkipsFullHosts(t *testing.T) {
	// a is already over capacity (5 of 4 CPUs, input as found): it gets
	// nothing and x stays. c is cordoned. Everything new goes to b.
	hosts := []Host{host("a", 4, 4), host("b", 4, 4), {Name: "c", CPUs: 4, MemoryBytes: 4 * gib, Unschedulable: true}}
	cs := []Container{ctr("x", 5, 0, "a"), ctr("n1", 1, 0, ""), ctr("n2", 0, 0, "")}
	p, err := PlaceAll(hosts, cs)
	if err != nil {
		t.Fatal(err)
	}
	want := []Move{{Container: "n1", To: "b"}, {Container: "n2", To: "b"}}
	if !reflect.DeepEqual(p.Moves, want) {
		t.Fatalf("moves %v, want %v", p.Moves, want)
	}
}

func TestPlaceAllNoSchedulableHost(t *testing.T) {
	hosts := []Host{{Name: "a", CPUs: 4, MemoryBytes: 4 * gib, Unschedulable: true}}
	if _, err := PlaceAll(hosts, []Container{ctr("n", 1, 1, "")}); !errors.Is(err, ErrNoSchedulableHost) {
		t.Fatalf("err %v", err)
	}
	// Nothing to place: not an error.
	if p, err := PlaceAll(hosts, nil); err != nil || !p.Reached {
		t.Fatalf("%+v %v", p, err)
	}
}
