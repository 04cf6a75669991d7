package placement

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestRebalanceOneMoveSuffices(t *testing.T) {
	// Two 4-CPU hosts: a runs 1+1+0.5+0.5 = 3 CPUs (0.75), b 1 (0.25).
	// Mean 0.5, threshold 1.1: every host must be at most 0.55, 2.2 CPUs.
	// Moving one of the 1-CPU containers makes 2 and 2 (imbalance 1):
	// one move. Moving the 0.5s would take two. a1 and a4 are alike;
	// the tie goes to the first by name.
	hosts := []Host{host("a", 4, 4), host("b", 4, 4)}
	cs := []Container{ctr("a1", 1, 0, "a"), ctr("a2", 0.5, 0, "a"), ctr("a3", 0.5, 0, "a"), ctr("a4", 1, 0, "a"), ctr("b1", 1, 0, "b")}
	p, err := Rebalance(hosts, cs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []Move{{"a1", "a", "b"}}; !reflect.DeepEqual(p.Moves, want) {
		t.Fatalf("moves %v, want %v", p.Moves, want)
	}
	if !p.Reached || !p.Minimal || !near(p.ImbalanceBefore, 1.5) || !near(p.ImbalanceAfter, 1) {
		t.Errorf("plan %+v: want reached, minimal, 1.5 -> 1", p)
	}
	replay(t, hosts, cs, p, "")
}

func TestRebalanceNothingToDo(t *testing.T) {
	// 0.5 and 0.45: mean 0.475, max/mean 1.053 <= 1.1.
	hosts := []Host{host("a", 4, 4), host("b", 4, 4)}
	cs := []Container{ctr("x", 2, 0, "a"), ctr("y", 1.8, 0, "b")}
	p, err := Rebalance(hosts, cs, Options{})
	if err != nil || len(p.Moves) != 0 || !p.Reached || !p.Minimal {
		t.Fatalf("plan %+v, %v: want no moves, reached", p, err)
	}
	// Nothing running at all: imbalance 1 by definition.
	p, err = Rebalance(hosts, nil, Options{Threshold: 1})
	if err != nil || len(p.Moves) != 0 || !p.Reached || p.ImbalanceBefore != 1 {
		t.Fatalf("empty: plan %+v, %v", p, err)
	}
}

func TestRebalanceTwoMovesMinimal(t *testing.T) {
	// Three 4-CPU hosts: a runs four 1-CPU containers, b and c nothing.
	// The mean load is always 1/3 (4 of 12 CPUs), so the imbalance is
	// the largest count times 0.75: 4/0/0 gives 3, 3/1/0 gives 2.25,
	// 2/1/1 and 2/2/0 give 1.5, the best there is. Threshold 1.5: two
	// moves, and one cannot do it. Threshold 1.1: out of reach, and the
	// best plan is still those two moves.
	hosts := []Host{host("a", 4, 4), host("b", 4, 4), host("c", 4, 4)}
	cs := []Container{ctr("x1", 1, 0, "a"), ctr("x2", 1, 0, "a"), ctr("x3", 1, 0, "a"), ctr("x4", 1, 0, "a")}
	p, err := Rebalance(hosts, cs, Options{Threshold: 1.5})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Moves) != 2 || !p.Reached || !p.Minimal || !near(p.ImbalanceAfter, 1.5) {
		t.Fatalf("plan %+v: want 2 moves, reached, minimal, 1.5", p)
	}
	replay(t, hosts, cs, p, "")

	// At 1.1: best found is 2/1/1, not reached, and the plan says so.
	p, err = Rebalance(hosts, cs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Reached || len(p.Moves) != 2 || !near(p.ImbalanceAfter, 1.5) || !strings.Contains(p.Reason, "threshold 1.1 not reached: no plan reaches it (every one was tried); best found 1.500") {
		t.Fatalf("plan %+v: want 2 moves to 1.5, not reached, a reason", p)
	}
}

func TestRebalanceMaxMoves(t *testing.T) {
	// The case above needs two moves; with one allowed the plan has one,
	// is not reached, and still improves things (3/1/0: 2.25 from 3).
	hosts := []Host{host("a", 4, 4), host("b", 4, 4), host("c", 4, 4)}
	cs := []Container{ctr("x1", 1, 0, "a"), ctr("x2", 1, 0, "a"), ctr("x3", 1, 0, "a"), ctr("x4", 1, 0, "a")}
	p, err := Rebalance(hosts, cs, Options{Threshold: 1.5, MaxMoves: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Moves) != 1 || p.Reached || !near(p.ImbalanceBefore, 3) || !near(p.ImbalanceAfter, 2.25) || !strings.Contains(p.Reason, "no plan within MaxMoves 1 reaches it") {
		t.Fatalf("plan %+v: want 1 move, not reached, 3 -> 2.25, MaxMoves in the reason", p)
	}
	replay(t, hosts, cs, p, "")
}

func TestRebalanceUnreachable(t *testing.T) {
	// One container: wherever it runs, the imbalance is 2 (0.75 / 0.375).
	// No move helps and none is made.
	hosts := []Host{host("a", 4, 4), host("b", 4, 4)}
	cs := []Container{ctr("x", 3, 0, "a")}
	p, err := Rebalance(hosts, cs, Options{})
	if err != nil || p.Reached || len(p.Moves) != 0 || p.ImbalanceAfter != p.ImbalanceBefore || !strings.Contains(p.Reason, "no plan reaches it") {
		t.Fatalf("plan %+v, %v: want no moves, not reached, a reason", p, err)
	}
}

func TestRebalanceUnschedulable(t *testing.T) {
	// b is empty but cordoned: a's extra goes to c, never to b. What runs
	// on d (cordoned) neither moves nor counts.
	hosts := []Host{
		host("a", 4, 4),
		{Name: "b", CPUs: 4, MemoryBytes: 4 * gib, Unschedulable: true},
		host("c", 4, 4),
		{Name: "d", CPUs: 4, MemoryBytes: 4 * gib, Unschedulable: true},
	}
	cs := []Container{ctr("x1", 1, 0, "a"), ctr("x2", 1, 0, "a"), ctr("d1", 4, 0, "d")}
	p, err := Rebalance(hosts, cs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []Move{{"x1", "a", "c"}}; !reflect.DeepEqual(p.Moves, want) || !p.Reached {
		t.Fatalf("plan %+v, want %v", p, want)
	}
	replay(t, hosts, cs, p, "")
}

func TestRebalanceBadOptions(t *testing.T) {
	hosts := []Host{host("a", 4, 4)}
	for _, o := range []Options{{Threshold: 0.9}, {Threshold: -1}, {MaxMoves: -1}} {
		if _, err := Rebalance(hosts, nil, o); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: err %v, want ErrInvalid", o, err)
		}
	}
}
