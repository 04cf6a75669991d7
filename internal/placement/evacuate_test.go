package placement

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestEvacuateHandChecked(t *testing.T) {
	// Three 4-CPU hosts. a runs x1 (2 CPUs), x2 and x3 (1 CPU each); b runs
	// y (1 CPU, load 0.25); c is empty. Largest first, each where the load
	// after is lowest:
	//   x1: b 0.75, c 0.5           -> c
	//   x2: b 0.5,  c 0.75          -> b
	//   x3: b 0.75, c 0.75 (tie)    -> c, which runs fewer containers (1 vs 2)
	// b = 0.5, c = 0.75: imbalance 0.75/0.625 = 1.2, and no split does
	// better (the 5 CPUs cannot be 2.5 and 2.5 in pieces of 2, 1, 1, 1).
	hosts := []Host{host("a", 4, 4), host("b", 4, 4), host("c", 4, 4)}
	cs := []Container{ctr("x1", 2, 0, "a"), ctr("x2", 1, 0, "a"), ctr("x3", 1, 0, "a"), ctr("y", 1, 0, "b")}
	p, err := Evacuate(hosts, cs, "a")
	if err != nil {
		t.Fatal(err)
	}
	want := []Move{{"x1", "a", "c"}, {"x2", "a", "b"}, {"x3", "a", "c"}}
	if !reflect.DeepEqual(p.Moves, want) {
		t.Fatalf("moves %v, want %v", p.Moves, want)
	}
	if !p.Reached || !near(p.ImbalanceAfter, 1.2) {
		t.Errorf("reached %v, imbalance after %v; want true, 1.2", p.Reached, p.ImbalanceAfter)
	}
	// Before, over b and c only: 0.25 / 0.125 = 2.
	if !near(p.ImbalanceBefore, 2) {
		t.Errorf("imbalance before %v, want 2", p.ImbalanceBefore)
	}
	replay(t, hosts, cs, p, "a")
}

func TestEvacuateRespectsCapacity(t *testing.T) {
	// b has 1 CPU free, c has 3: the 3-CPU container can only go to c and
	// the 1-CPU one then only to b.
	hosts := []Host{host("a", 4, 4), host("b", 4, 4), host("c", 4, 4)}
	cs := []Container{ctr("big", 3, 0, "a"), ctr("small", 1, 0, "a"), ctr("y", 3, 0, "b"), ctr("z", 1, 0, "c")}
	p, err := Evacuate(hosts, cs, "a")
	if err != nil {
		t.Fatal(err)
	}
	want := []Move{{"big", "a", "c"}, {"small", "a", "b"}}
	if !reflect.DeepEqual(p.Moves, want) {
		t.Fatalf("moves %v, want %v", p.Moves, want)
	}
	replay(t, hosts, cs, p, "a")
}

func TestEvacuatePacksWhenSpreadingFails(t *testing.T) {
	// b: 10 CPUs, 5 used; c: 4 CPUs, empty; 9 CPUs free for 4+3+2.
	// Spreading (lowest load after) puts p (4) on b (0.9 < 1.0), q (3) on
	// c (0.75), and r (2) then fits neither (1 free on each). Packing
	// (tightest fit) puts p on c (1.0 > 0.9), q and r on b (0.8, then 1.0):
	// everything fits, so that is the plan.
	hosts := []Host{host("a", 16, 16), host("b", 10, 16), host("c", 4, 16)}
	cs := []Container{ctr("p", 4, 0, "a"), ctr("q", 3, 0, "a"), ctr("r", 2, 0, "a"), ctr("y", 5, 0, "b")}
	p, err := Evacuate(hosts, cs, "a")
	if err != nil {
		t.Fatal(err)
	}
	want := []Move{{"p", "a", "c"}, {"q", "a", "b"}, {"r", "a", "b"}}
	if !reflect.DeepEqual(p.Moves, want) {
		t.Fatalf("moves %v, want %v", p.Moves, want)
	}
	replay(t, hosts, cs, p, "a")
}

func TestEvacuateTooBigPartialPlan(t *testing.T) {
	// huge needs 8 CPUs; b and c have 4 each: it stays, named in the
	// error; the small one still gets a destination.
	hosts := []Host{host("a", 16, 16), host("b", 4, 4), host("c", 4, 4)}
	cs := []Container{ctr("huge", 8, 1, "a"), ctr("small", 1, 1, "a")}
	p, err := Evacuate(hosts, cs, "a")
	var u *UnplacedError
	if !errors.As(err, &u) || len(u.Unplaced) != 1 || u.Unplaced[0].Container != "huge" {
		t.Fatalf("err %v: want an *UnplacedError for huge", err)
	}
	if !strings.Contains(err.Error(), "container huge: requests 8 CPUs and 1.0 GiB memory: too big for every other schedulable host") {
		t.Errorf("error %q does not say why", err)
	}
	if p.Reached || len(p.Moves) != 1 || p.Moves[0].Container != "small" || len(p.Unplaced) != 1 || p.Reason == "" {
		t.Errorf("plan %+v: want small moved, huge unplaced, a reason", p)
	}
	replay(t, hosts, cs, p, "a")
}

func TestEvacuateNoRoomLeft(t *testing.T) {
	// Two 2-CPU containers, and b has 3 of 4 CPUs free: one goes, the
	// other (which one is a tie) has no room left and the error says so.
	hosts := []Host{host("a", 4, 4), host("b", 4, 4)}
	cs := []Container{ctr("p", 2, 0, "a"), ctr("q", 2, 0, "a"), ctr("y", 1, 0, "b")}
	p, err := Evacuate(hosts, cs, "a")
	if err == nil || !strings.Contains(err.Error(), "requests 2 CPUs and 0 B memory: no other schedulable host has that much free (most free: 1 CPUs on b") {
		t.Fatalf("err %v", err)
	}
	if len(p.Moves) != 1 || len(p.Unplaced) != 1 || p.Moves[0].Container == p.Unplaced[0].Container || p.Moves[0].To != "b" {
		t.Errorf("plan %+v: want one moved to b, the other unplaced", p)
	}
	replay(t, hosts, cs, p, "a")
}

func TestEvacuateErrors(t *testing.T) {
	hosts := []Host{host("a", 4, 4), {Name: "b", CPUs: 4, MemoryBytes: 4 * gib, Unschedulable: true}}
	cs := []Container{ctr("x", 1, 1, "a")}
	if _, err := Evacuate(hosts, cs, "nope"); !errors.Is(err, ErrUnknownHost) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("unknown host: err %v", err)
	}
	// a is the only schedulable host (b is cordoned): nowhere to go.
	_, err := Evacuate(hosts, cs, "a")
	if !errors.Is(err, ErrNoSchedulableHost) {
		t.Errorf("only schedulable host: err %v, want ErrNoSchedulableHost", err)
	}
	// One host in all.
	if _, err := Evacuate(hosts[:1], cs, "a"); !errors.Is(err, ErrNoSchedulableHost) {
		t.Errorf("single host: err %v", err)
	}
	// An empty host needs no destination: nothing to refuse.
	if p, err := Evacuate(hosts, nil, "a"); err != nil || len(p.Moves) != 0 || !p.Reached {
		t.Errorf("empty host: %+v, %v", p, err)
	}
}

func TestEvacuateCordonedHostAndOtherCordoned(t *testing.T) {
	// a is already unschedulable (the usual order: cordon, then drain);
	// c is cordoned too and must not receive anything; what runs on c
	// stays.
	hosts := []Host{
		{Name: "a", CPUs: 4, MemoryBytes: 4 * gib, Unschedulable: true},
		host("b", 4, 4),
		{Name: "c", CPUs: 4, MemoryBytes: 4 * gib, Unschedulable: true},
	}
	cs := []Container{ctr("x", 1, 1, "a"), ctr("y", 1, 1, "a"), ctr("z", 1, 1, "c")}
	p, err := Evacuate(hosts, cs, "a")
	if err != nil {
		t.Fatal(err)
	}
	want := []Move{{"x", "a", "b"}, {"y", "a", "b"}}
	if !reflect.DeepEqual(p.Moves, want) {
		t.Fatalf("moves %v, want %v", p.Moves, want)
	}
	replay(t, hosts, cs, p, "a")
}
