package migratebench_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/bench/migratebench"
	"github.com/containerflow/containerflow/internal/cli"
)

// The test binary doubles as the cflow binary: the testbed starts it as
// `agent serve`, and the container runs it as `workload stream-server`.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && (os.Args[1] == "agent" || os.Args[1] == "workload" || os.Args[1] == "switch") {
		os.Exit(cli.Execute())
	}
	os.Exit(m.Run())
}

// runLossless runs the benchmark and fails on any failed migration,
// dropped connection, or lost or duplicated byte.
func runLossless(t *testing.T, o migratebench.Options) *migratebench.Result {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for the testbed, runc and CRIU (CI runs as root)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	o.Binary, o.Progress = self, testWriter{t}
	res, err := migratebench.Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	res.Print(testWriter{t})
	if res.Failed != 0 || res.ConnectionDrops != 0 || res.BytesLost != 0 || res.BytesDuplicated != 0 || res.MemoryUnverified != 0 {
		t.Fatalf("failed %d, drops %d %v, lost %d, duplicated %d bytes, memory unverified %d", res.Failed, res.ConnectionDrops, res.DropErrors, res.BytesLost, res.BytesDuplicated, res.MemoryUnverified)
	}
	for _, row := range res.Rows {
		if row.BytesSent == 0 || row.DowntimeMs.N != o.Migrations {
			t.Fatalf("nothing measured for %s %d MiB: %+v", row.Engine, row.MemoryMiB, row)
		}
		if o.References > 0 && (row.ReferenceMs.N == 0 || row.ReadyOverReference == 0) {
			t.Fatalf("no reference for %s %d MiB: %+v", row.Engine, row.MemoryMiB, row.ReferenceMs)
		}
	}
	return res
}

// Every byte of a bidirectional stream arrives exactly once, in order,
// across migrations in both directions, on several connections, with
// either engine, and across a bare checkpoint/restore in place.
func TestStreamSurvivesMigrations(t *testing.T) {
	res := runLossless(t, migratebench.Options{Migrations: 2, Connections: 8, Interval: 5 * time.Millisecond,
		Settle: 1500 * time.Millisecond, Compare: true, References: 1})
	if len(res.Rows) != 2 || len(res.DirectOverRunc) != 1 {
		t.Fatalf("--compare: rows %d, ratios %v", len(res.Rows), res.DirectOverRunc)
	}
}

// A container holding touched memory keeps it intact across migrations,
// stop-and-copy and post-copy (the workload checks every page after the
// last migration, and exits if one is wrong, which drops its connections).
func TestMemoryCarriedIntact(t *testing.T) {
	runLossless(t, migratebench.Options{Migrations: 2, Connections: 2, Interval: 5 * time.Millisecond,
		Settle: time.Second, MemoryMiB: []int{64}, Modes: []string{"stop-and-copy", "post-copy"}})
}

// At least 200 concurrent connections survive migrations both ways, with
// every record accounted for.
func TestManyConnectionsSurviveMigrations(t *testing.T) {
	runLossless(t, migratebench.Options{Migrations: 2, Connections: 200, Interval: 50 * time.Millisecond, Settle: 2 * time.Second})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
