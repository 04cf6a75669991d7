package placebench

import (
	"bytes"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containerflow/containerflow/internal/placement"
)

func TestGenerateIsSeededAndFeasible(t *testing.T) {
	h1, c1, err := Generate(20, 150, 0.9, 7)
	if err != nil {
		t.Fatal(err)
	}
	h2, c2, _ := Generate(20, 150, 0.9, 7)
	if !reflect.DeepEqual(h1, h2) || !reflect.DeepEqual(c1, c2) {
		t.Fatal("same seed, different cluster")
	}
	if _, c3, _ := Generate(20, 150, 0.9, 8); reflect.DeepEqual(c1, c3) {
		t.Fatal("another seed, same containers")
	}
	if len(h1) != 20 || len(c1) != 150 {
		t.Fatalf("%d hosts, %d containers", len(h1), len(c1))
	}
	var cap, req float64
	for _, h := range h1 {
		cap += h.CPUs
	}
	for _, c := range c1 {
		req += c.CPUs
		if c.Host != "" {
			t.Fatalf("%s comes placed", c.Name)
		}
	}
	// Rounded down from 90% of every host.
	if req > 0.9*cap || req < 0.89*cap {
		t.Errorf("requests %.1f of %.1f CPUs, want just under 90%%", req, cap)
	}
}

func TestRunSmall(t *testing.T) {
	res, err := Run(Options{Hosts: 12, Containers: 90, Seed: 3, Repeat: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Phases) != 3 || len(res.Failures()) != 0 {
		t.Fatalf("result %+v", res)
	}
	for _, p := range res.Phases {
		if p.Violations != 0 || !p.Deterministic {
			t.Errorf("%s: %+v", p.Name, p)
		}
	}
	if p := res.Phases[0]; p.Moves != 90 || p.Unplaced != 0 {
		t.Errorf("place all: %+v", p)
	}
	if p := res.Phases[1]; p.ImbalanceAfter >= p.ImbalanceBefore || p.Moves == 0 || p.Moves > res.SkewMoves {
		t.Errorf("rebalance: %+v after %d skew moves", p, res.SkewMoves)
	}
	var out bytes.Buffer
	res.Print(&out)
	for _, want := range []string{"90 containers on 12 hosts", "place all", "rebalance", "evacuate", "VIOLATIONS"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if err := res.WriteJSON(filepath.Join(t.TempDir(), "r.json")); err != nil {
		t.Fatal(err)
	}
}

func TestViolationsCatchesBadPlans(t *testing.T) {
	hosts := []placement.Host{{Name: "a", CPUs: 2, MemoryBytes: 1 << 30}, {Name: "b", CPUs: 2, MemoryBytes: 1 << 30}}
	cs := []placement.Container{{Name: "x", CPUs: 2, Host: "a"}, {Name: "y", CPUs: 1, Host: "b"}}
	over := placement.Plan{Moves: []placement.Move{{Container: "x", From: "a", To: "b"}}}
	if v := Violations(hosts, cs, over); v == 0 {
		t.Error("3 CPUs on a 2-CPU host not counted")
	}
	wrongFrom := placement.Plan{Moves: []placement.Move{{Container: "y", From: "a", To: "a"}}}
	if v := Violations(hosts, cs, wrongFrom); v == 0 {
		t.Error("a move from where the container is not, not counted")
	}
	alsoOver := placement.Plan{Moves: []placement.Move{{Container: "y", From: "b", To: "a"}}}
	if v := Violations(hosts, cs, alsoOver); v != 1 {
		t.Errorf("violations %d, want 1 (a: 2 + 1 = 3 CPUs)", v)
	}
	if v := Violations(hosts, cs, placement.Plan{}); v != 0 {
		t.Errorf("empty plan: %d", v)
	}
}

// The Go benchmarks time the planner alone on the command's default
// input: go test -bench . ./internal/bench/placebench
func BenchmarkPlaceAll1000on100(b *testing.B) {
	hosts, cs, err := Generate(100, 1000, 0.8, 1)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := placement.PlaceAll(hosts, cs); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRebalance1000on100(b *testing.B) {
	hosts, cs, err := Generate(100, 1000, 0.8, 1)
	if err != nil {
		b.Fatal(err)
	}
	p, err := placement.PlaceAll(hosts, cs)
	if err != nil {
		b.Fatal(err)
	}
	skewed, _, _ := skew(hosts, execute(cs, p), 0.1, 1)
	for b.Loop() {
		if _, err := placement.Rebalance(hosts, skewed, placement.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
