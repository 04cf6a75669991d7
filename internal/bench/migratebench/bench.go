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
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/containerflow/containerflow/internal/agent"
	"github.com/containerflow/containerflow/internal/image"
	"github.com/containerflow/containerflow/internal/migration"
	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/workload/quic"
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
	// CompareTLS alternates migrations between the agents' mutual-TLS
	// listeners and their plain ones (the testbed runs insecure for it),
	// and reports the downtime and the image stream's throughput of both.
	CompareTLS bool
	// Compare runs the direct and the runc engine on two identical
	// containers, their migrations interleaved.
	Compare bool
	// MemoryMiB lists the touched memory each container holds, one round
	// of containers per size (nil: one round without ballast).
	MemoryMiB []int
	// Modes lists the migration modes to run, one round each (nil: the
	// request's mode, "auto" by default).
	Modes []string
	// Workloads lists the workloads of each round: "stream" (the
	// sequence-checked TCP stream, the default) and "quic" (the QUIC
	// workload: request streams, a download, datagrams), their containers'
	// migrations interleaved, so their interruptions compare in one run.
	Workloads []string
	// ClientLink impairs the client's link for the whole run (e.g. loss).
	ClientLink testbed.Impairment
	// Image runs every container of a round twice, from the host's root
	// and from an image holding the workload (built from Binary, which
	// must be static), their migrations interleaved: image pre-staging
	// must cost no downtime, and its own time is reported apart.
	Image bool
	// References is how many bare checkpoint/restore references to take
	// of each container, spread between its migrations.
	References int
	Progress   io.Writer
}

// ContainerIP is where the first workload container runs; others follow.
var ContainerIP = netip.MustParseAddr("198.18.0.2")

const (
	port     = 9000
	quicPort = 4433

	workloadStream = "stream"
	workloadQUIC   = "quic"
)

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
	workloads := o.Workloads
	if len(workloads) == 0 {
		workloads = []string{workloadStream}
	}
	for _, w := range workloads {
		if w != workloadStream && w != workloadQUIC {
			return nil, fmt.Errorf("workload %q: stream or quic", w)
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
	insecure := o.CompareTLS || o.Request.Transport == agent.TransportPlain
	tb, err := testbed.Up(testbed.Config{Prefix: o.Prefix, AgentBinary: o.Binary, Insecure: insecure})
	if err != nil {
		return nil, err
	}
	defer testbed.Down(o.Prefix) //nolint:errcheck // best effort on the way out
	tok, err := tb.Token()
	if err != nil {
		return nil, err
	}
	clients := map[string]*agent.Client{}
	for _, h := range tb.Hosts() {
		clients[h] = agent.NewClient("unix://"+tb.AgentSocket(h), agent.ClientOptions{Token: tok})
	}
	if o.Image {
		if err := loadBenchImage(ctx, o.Binary, clients[testbed.HostA]); err != nil {
			return nil, err
		}
	}
	if o.ClientLink != (testbed.Impairment{}) {
		if err := tb.Impair("client", o.ClientLink); err != nil {
			return nil, err
		}
	}
	res := &Result{Connections: o.Connections}
	res.Options.Interval, res.Options.Settle = o.Interval.String(), o.Settle.String()
	seq := 0 // numbers the timing files across rounds
	for _, mib := range sizes {
		for _, mode := range modes {
			r := &round{o: o, tb: tb, clients: clients, seq: &seq, mode: mode}
			roots := []string{""}
			if o.Image {
				roots = append(roots, benchImage)
			}
			ip := ContainerIP
			for _, eng := range engines {
				if eng == agent.EngineRunc && mode == migration.ModePostCopy {
					continue // post-copy is the direct engine's
				}
				for _, img := range roots {
					for _, w := range workloads {
						name := fmt.Sprintf("%s_%dm", eng, mib)
						if img != "" {
							name += "_img"
						}
						if w != workloadStream {
							name += "_" + w
						}
						r.ctrs = append(r.ctrs, &container{name: name, ip: ip, engine: eng, mib: mib, image: img, workload: w, where: testbed.HostA})
						ip = ip.Next()
					}
				}
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
	name      string
	ip        netip.Addr
	engine    string
	mib       int
	image     string // "" for the host's root
	workload  string // workloadStream or workloadQUIC
	where     string
	conns     []*stream.Conn
	final     []stream.ConnStats
	quic      *quic.Client // the QUIC workload's connections
	quicFinal []quic.ConnStats
	events    []event
	// verified: the workload checked every page of its memory after the
	// last migration.
	verified bool
}

func (c *container) args(o Options) []string {
	bin := "/opt/cflow/bin/" + filepath.Base(o.Binary)
	if c.image != "" {
		bin = benchImageBinary
	}
	if c.workload == workloadQUIC {
		return []string{bin, "workload", "quic-server", "--listen", fmt.Sprintf(":%d", quicPort), "--interval", o.Interval.String()}
	}
	a := []string{bin, "workload", "stream-server",
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

// benchImage holds the workload (the cflow binary) at benchImageBinary.
const (
	benchImage       = "cflow.bench/stream:1"
	benchImageBinary = "/opt/app/cflow"
)

// loadBenchImage builds the benchmark's image from the cflow binary and
// loads it on hostA only: the first migration to hostB pre-stages it.
func loadBenchImage(ctx context.Context, bin string, c *agent.Client) error {
	if f, err := elf.Open(bin); err == nil {
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				f.Close()
				return fmt.Errorf("--image: %s is dynamically linked and cannot run in the image; build it with CGO_ENABLED=0 (make build does)", bin)
			}
		}
		f.Close()
	}
	dir, err := os.MkdirTemp("", "cflow-bench-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "image.tar")
	if err := image.BuildArchive(file, benchImage, map[string]string{benchImageBinary: bin}, v1.Config{
		Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
	}); err != nil {
		return fmt.Errorf("build the benchmark image: %w", err)
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = c.LoadImage(ctx, f)
	return err
}
