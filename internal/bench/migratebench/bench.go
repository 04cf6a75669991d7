// Package migratebench measures live migration from the client's side:
// it runs the sequence-checked stream workload in containers on the
// emulated testbed, migrates them back and forth, and reports per-phase
// timings next to the downtime the clients actually saw (the longest
// silence on any connection around each migration), with every lost,
// duplicated or unanswered record counted.
//
// Everything compared is measured side by side in one run, because the
// machines are shared and noisy: engines (--compare) interleave their
// migrations on two identical containers, and a bare CRIU dump + restore
// of the same container on its own host (the reference) is taken between
// migrations, so "how far from CRIU's own cost" is a ratio of the same
// run.
package migratebench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/containerflow/containerflow/internal/agent"
	"github.com/containerflow/containerflow/internal/migration"
	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/workload/stream"
)

// Options configures a run.
type Options struct {
	// Migrations is the number of migrations of each container (one per
	// engine and memory size).
	Migrations  int
	Connections int           // per container
	Interval    time.Duration // between records, each direction
	Settle      time.Duration // after each migration
	Binary      string        // cflow binary: agents and the in-container server
	Prefix      string        // testbed prefix; random when empty
	RecordsDir  string        // when set, migration_timing_N.{txt,json} go here
	Request     agent.MigrateRequest
	// CompareHandoff alternates migrations with and without the handoff of
	// clients' frames caught during the freeze, and reports both, measured
	// side by side in one run.
	CompareHandoff bool
	// ComparePriority alternates migrations with and without raised CPU
	// priority for CRIU (agent.MigrationNice), and reports both.
	ComparePriority bool
	// Compare runs the direct and the runc engine on two identical
	// containers, their migrations interleaved.
	Compare bool
	// MemoryMiB lists the touched memory each container holds, one round
	// of containers per size (nil: one round without ballast).
	MemoryMiB []int
	// Modes lists the migration modes to run, one round each (nil: the
	// request's mode, "auto" by default).
	Modes []string
	// References is how many bare checkpoint/restore references to take
	// of each container, spread between its migrations.
	References int
	Progress   io.Writer
}

// ContainerIP is where the first workload container runs; others follow.
var ContainerIP = netip.MustParseAddr("198.18.0.2")

const port = 9000

// Run performs the benchmark on a fresh testbed it removes afterwards.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Migrations < 1 || o.Connections < 1 || o.Interval <= 0 || o.Settle < 0 || o.References < 0 {
		return nil, fmt.Errorf("migrations and connections must be >= 1, interval > 0, references >= 0")
	}
	engines := []string{o.Request.Engine}
	if engines[0] == "" {
		engines[0] = agent.EngineDirect
	}
	if o.Compare {
		engines = []string{agent.EngineDirect, agent.EngineRunc}
	}
	sizes := o.MemoryMiB
	if len(sizes) == 0 {
		sizes = []int{0}
	}
	for _, s := range sizes {
		if s < 0 {
			return nil, fmt.Errorf("memory size %d MiB", s)
		}
	}
	modes := o.Modes
	if len(modes) == 0 {
		modes = []string{o.Request.Mode}
	}
	for _, m := range modes {
		switch m {
		case "", agent.ModeAuto, migration.ModeStopAndCopy, migration.ModePostCopy:
		default:
			return nil, fmt.Errorf("mode %q: auto, stop-and-copy or post-copy", m)
		}
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Prefix == "" {
		b := make([]byte, 2)
		_, _ = rand.Read(b)
		o.Prefix = "bm" + hex.EncodeToString(b)
	}
	tb, err := testbed.Up(testbed.Config{Prefix: o.Prefix, AgentBinary: o.Binary})
	if err != nil {
		return nil, err
	}
	defer testbed.Down(o.Prefix) //nolint:errcheck // best effort on the way out
	tok, err := tb.Token()
	if err != nil {
		return nil, err
	}
	clients := map[string]*agent.Client{}
	for _, h := range testbed.Hosts {
		clients[h] = agent.NewClient("unix://"+tb.AgentSocket(h), agent.ClientOptions{Token: tok})
	}
	res := &Result{Connections: o.Connections}
	res.Options.Interval, res.Options.Settle = o.Interval.String(), o.Settle.String()
	seq := 0 // numbers the timing files across rounds
	for _, mib := range sizes {
		for _, mode := range modes {
			r := &round{o: o, tb: tb, clients: clients, seq: &seq, mode: mode}
			for i, eng := range engines {
				if eng == agent.EngineRunc && mode == migration.ModePostCopy {
					continue // post-copy is the direct engine's
				}
				ip := ContainerIP
				for range i {
					ip = ip.Next()
				}
				r.ctrs = append(r.ctrs, &container{name: fmt.Sprintf("%s_%dm", eng, mib), ip: ip, engine: eng, mib: mib, where: testbed.HostA})
			}
			rows, err := r.run(ctx)
			res.add(rows)
			if err != nil {
				return res, err
			}
		}
	}
	res.summarize()
	return res, ctx.Err()
}

// container is one workload container of a round and where it is.
type container struct {
	name   string
	ip     netip.Addr
	engine string
	mib    int
	where  string
	conns  []*stream.Conn
	final  []stream.ConnStats
	events []event
	// verified: the workload checked every page of its memory after the
	// last migration.
	verified bool
}

func (c *container) args(o Options) []string {
	a := []string{"/opt/cflow/bin/" + filepath.Base(o.Binary), "workload", "stream-server",
		"--listen", fmt.Sprintf(":%d", port), "--interval", o.Interval.String()}
	if c.mib > 0 {
		a = append(a, "--memory-mib", fmt.Sprint(c.mib))
	}
	return a
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
