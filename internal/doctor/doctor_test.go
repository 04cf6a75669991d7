package doctor

import (
	"context"
	"os"
	"strings"
	"testing"
)

func TestPrintMarksFailuresWithFix(t *testing.T) {
	var b strings.Builder
	ok := Print(&b, []Result{
		{Name: "a", OK: true, Required: true, Detail: "fine"},
		{Name: "b", OK: false, Required: false, Detail: "meh", Fix: "do b"},
	})
	if !ok {
		t.Error("an optional failure must not fail the doctor")
	}
	if !strings.Contains(b.String(), "[warn] b") || !strings.Contains(b.String(), "fix: do b") {
		t.Errorf("warn line or fix missing:\n%s", b.String())
	}
	b.Reset()
	if Print(&b, []Result{{Name: "c", OK: false, Required: true, Detail: "broken\nbadly", Fix: "do c"}}) {
		t.Error("a required failure must fail the doctor")
	}
	if !strings.Contains(b.String(), "[FAIL] c") || !strings.Contains(b.String(), "broken badly") {
		t.Errorf("FAIL line missing or not folded to one line:\n%s", b.String())
	}
}

// After the bootstrap (which `make test` runs first) every required check
// must pass on this machine: this is the "doctor is all green" promise.
func TestAllRequiredChecksPass(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the doctor's probes need root (CI runs as root)")
	}
	rs := Run(context.Background())
	if len(rs) != len(Checks()) {
		t.Fatalf("%d results for %d checks", len(rs), len(Checks()))
	}
	var b strings.Builder
	if !Print(&b, rs) {
		t.Fatalf("required checks failed:\n%s", b.String())
	}
	t.Log("\n" + b.String())
}
