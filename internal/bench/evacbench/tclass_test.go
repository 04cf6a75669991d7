package evacbench

import (
	"bytes"
	"strings"
	"testing"
)

// A comparison that lost anything fails, naming what; a clean one does
// not; both print every row and observer.
func TestClassLossAndPrint(t *testing.T) {
	clean := func() *Result {
		return &Result{Hosts: 4, Containers: 10, Class: &ClassResult{LinkRate: 100e6, Concurrency: 4, Rounds: 2,
			Idle: []*Observed{{Observer: ObserverSource}, {Observer: ObserverDest}},
			Rows: []*ClassRow{
				{Class: ClassOn, Row: Row{Moved: 20, EvacuationMs: []float64{12000}}, Observed: []*Observed{{Observer: ObserverSource}, {Observer: ObserverDest}}},
				{Class: ClassOff, Row: Row{Moved: 20, EvacuationMs: []float64{13000}}, Observed: []*Observed{{Observer: ObserverSource}, {Observer: ObserverDest}}},
			},
			Obs: []ObserverEnd{{Observer: ObserverSource}, {Observer: ObserverDest}}}}
	}
	r := clean()
	if err := r.lossError(); err != nil {
		t.Fatalf("clean run: %v", err)
	}
	var out bytes.Buffer
	r.Print(&out)
	for _, want := range []string{"100mbit", "class off", "class on", ObserverSource, ObserverDest, "idle"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	r.Class.Rows[1].RecordsLost = 1
	r.Class.Obs[0].Dropped = true
	err := r.lossError()
	if err == nil || !strings.Contains(err.Error(), "class off") || !strings.Contains(err.Error(), ObserverSource) {
		t.Fatalf("losses not reported: %v", err)
	}
	if (&Result{}).lossError() != nil {
		t.Fatal("a run without the comparison has no class losses")
	}
}
