package cli

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/containerflow/containerflow/internal/agent"
	"github.com/containerflow/containerflow/internal/bench/migratebench"
	"github.com/containerflow/containerflow/internal/testbed"
)

// newBenchMigrateCmd measures migrations from the client's side.
func newBenchMigrateCmd(g *globals) *cobra.Command {
	var (
		o          migratebench.Options
		jsonPath   string
		clientLink string
		tlsMode    string
	)
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Migrate a streaming TCP workload back and forth and report downtime, phases and losses",
		Long: `Builds a fresh testbed, runs a sequence-checked TCP workload (records both
ways every --interval on --connections connections) in a container on hostA,
migrates it between hostA and hostB --migrations times, and reports, per
migration and as distributions: the client-visible downtime (the longest
silence any connection saw, per direction), time to ready, total time,
every phase, and every lost, duplicated or unanswered byte.

--compare runs the direct and the runc engine on two identical containers
with their migrations interleaved; --memory-mib 10,128,512 repeats the run
with containers holding that much touched, self-checking memory. Between
migrations, --references times, each container is also checkpointed and
restored in place by bare CRIU (no transfer, no network steps): time to
ready is reported as a ratio of that reference, measured in the same run.
--workload stream,quic adds a QUIC server container (request streams, a
download, datagrams) migrated interleaved with the TCP one; --client-link
loss=1% impairs the client's link for the whole run. The testbed (a new one, named by --prefix or at random) is removed
afterwards.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			o.Binary = exe
			o.Progress = cmd.OutOrStdout()
			if cmd.Flags().Changed("prefix") {
				o.Prefix = g.prefix // otherwise a fresh random one: never an existing testbed
			}
			if o.Migrations < 1 || o.Connections < 1 || o.Interval <= 0 || o.References < 0 {
				return fmt.Errorf("--migrations and --connections must be >= 1, --interval > 0 and --references >= 0")
			}
			if o.Request.Engine != "direct" && o.Request.Engine != "runc" {
				return fmt.Errorf("--engine %q: direct or runc", o.Request.Engine)
			}
			if clientLink != "" {
				_, im, err := testbed.ParseImpairSpec("client:" + clientLink)
				if err != nil {
					return fmt.Errorf("--client-link: %w", err)
				}
				if im.Seed == 0 {
					im.Seed = 1 // runs repeat
				}
				o.ClientLink = im
			}
			if jsonPath != "" {
				f, err := os.Create(jsonPath)
				if err != nil {
					return fmt.Errorf("--json: %w", err)
				}
				f.Close()
			}
			switch tlsMode {
			case "on":
			case "off":
				o.Request.Transport = agent.TransportPlain
			default:
				return fmt.Errorf("--tls %q: on or off", tlsMode)
			}
			res, err := migratebench.Run(cmd.Context(), o)
			if res != nil {
				if werr := report(cmd.OutOrStdout(), res, jsonPath); werr != nil {
					return werr
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Migrations, "migrations", 10, "number of migrations (alternating hostA->hostB and back)")
	f.IntVar(&o.Connections, "connections", 8, "concurrent TCP connections")
	f.DurationVar(&o.Interval, "interval", 5*time.Millisecond, "interval between records, each direction")
	f.DurationVar(&o.Settle, "settle", 2*time.Second, "pause after each migration")
	f.StringVar(&o.RecordsDir, "records", "", "directory for migration_timing_N.{txt,json}")
	f.StringVar(&jsonPath, "json", "", "write the result as JSON to this file")
	f.IntVar(&o.Request.QuiesceSignal, "quiesce-signal", 0, "signal sent before the freeze and after the move (0: none)")
	f.IntVar(&o.Request.DrainTimeoutMs, "drain-timeout-ms", 0, "wait for send queues to drain before the freeze")
	f.BoolVar(&o.CompareHandoff, "compare-handoff", false, "alternate migrations with and without the handoff of frames caught during the freeze, and report both")
	f.BoolVar(&o.ComparePriority, "compare-priority", false, "alternate migrations with and without raised CPU priority for CRIU, and report both")
	f.BoolVar(&o.Image, "image", false, "also run each container from an image holding the workload (built from the cflow binary, which must be static), migrations interleaved; reports image/host-root downtime and the image pre-staging time apart")
	f.StringVar(&o.Request.Engine, "engine", "direct", "checkpoint/restore engine: direct (CRIU over its RPC) or runc")
	f.BoolVar(&o.CompareTLS, "compare-tls", false, "alternate migrations over the agents' mutual TLS and over plain HTTP (the testbed runs --insecure), and report downtime and image stream throughput of both")
	f.StringVar(&tlsMode, "tls", "on", "transport between the agents: on (mutual TLS) or off (plain HTTP; the testbed runs --insecure)")
	f.BoolVar(&o.Compare, "compare", false, "run both engines side by side, migrations interleaved (ignores --engine)")
	f.IntSliceVar(&o.MemoryMiB, "memory-mib", nil, "touched memory per container, one round per size (e.g. 10,128,512)")
	f.StringSliceVar(&o.Modes, "mode", []string{"auto"}, "migration modes, one round each: auto, stop-and-copy, post-copy (e.g. stop-and-copy,post-copy)")
	f.IntVar(&o.References, "references", 5, "bare CRIU checkpoint/restore references per container")
	f.StringVar(&o.Request.Compress, "compress", "", "pack the image stream on the wire: none or zstd")
	f.StringSliceVar(&o.Workloads, "workload", []string{"stream"}, "workloads, their containers migrated interleaved: stream (TCP), quic (e.g. stream,quic)")
	f.StringVar(&clientLink, "client-link", "", "impair the client's link for the whole run, e.g. loss=1%,delay=5ms (see cflow testbed impair)")
	return cmd
}
