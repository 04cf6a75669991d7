package soakbench_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/bench/soakbench"
	"github.com/containerflow/containerflow/internal/cli"
)

// The test binary doubles as the cflow binary: the testbed starts it as
// `agent serve` and `switch serve`, the container runs it as `workload
// stream-server`, the impairments run it as `testbed impair-relay`, and
// the soak restarts killed daemons from it.
func TestMain(m *testing.M) {
	// Any subcommand goes to the CLI, which refuses one it does not know:
	// run as a subcommand, the test binary must never run the tests (a
	// relay that did started nested soaks).
	if len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-") {
		os.Exit(cli.Execute())
	}
	os.Exit(m.Run())
}

// A short soak: 100 migrations, a fault in about a third of them, drawn
// from a fixed seed. No byte may be lost or duplicated, no connection
// may drop unless a fault makes that unavoidable, every record must
// agree with where the container is, every fault drawn must have been
// injectable, and nothing may be left on the host once the last
// container is removed.
func TestSoakShort(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for the testbed, runc and CRIU (CI runs as root)")
	}
	// Opt-in: about 3.5 minutes, and an open finding (docs/soak.md, 14)
	// can fail it when a fault lands in its window; CI must not depend on
	// that timing.
	if os.Getenv("CFLOW_SOAK") == "" {
		t.Skip("set CFLOW_SOAK=1 to run (about 3.5 minutes); see docs/soak.md")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	o := soakbench.Options{Migrations: 100, FaultRate: 0.3, Seed: 7, Faults: soakbench.AllFaults, Connections: 4,
		Interval: 10 * time.Millisecond, Settle: 100 * time.Millisecond, Binary: self, Progress: testWriter{t}}
	if dir := os.Getenv("CFLOW_SOAK_LOGS"); dir != "" {
		o.LogsDir = dir
	}
	res, err := soakbench.Run(context.Background(), o)
	if res != nil {
		res.Print(testWriter{t})
	}
	if err != nil {
		t.Fatal(err)
	}
	if res.Migrations != o.Migrations || res.BytesSent == 0 {
		t.Fatalf("ran %d of %d migrations, %d bytes sent", res.Migrations, o.Migrations, res.BytesSent)
	}
	if !res.Pass {
		t.Fatalf("soak failed: %v", res.Verdicts)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
