package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/containerflow/containerflow/internal/experiment"
	"github.com/containerflow/containerflow/internal/plot"
	"github.com/containerflow/containerflow/internal/testbed"
)

// newExperimentCmd is `cflow experiment`: the seed's run_experiment.sh as
// one command on the emulated testbed.
func newExperimentCmd(g *globals) *cobra.Command {
	var (
		steady, post float64
		o            experiment.Options
		imp          impairFlags
		q            quicFlags
	)
	cmd := &cobra.Command{
		Use:   "experiment",
		Short: "Run the migration experiment on the emulated testbed: workload, load generator, N migrations, metrics, plots, report",
		Long: `experiment brings the testbed up (switch, one agent per host), runs the
WebSocket workload server in a container on hostA at 198.18.0.2 and the load
generator in the client node, collects metrics every second, waits
--steady-state seconds, performs --migrations live migrations alternating
hostA -> hostB -> hostA with --post-migration seconds after each, then writes
OUT/run_YYYYMMDD_HHMMSS/ (metrics.csv, migration_timing_N.txt, summary.json,
report.md and twelve plots) and tears the testbed down — also on failure or
Ctrl-C, after writing what it measured so far. See docs/experiment.md.

--workload quic runs the QUIC server-migration experiment instead: a quic-go
server in a container, --connections QUIC connections (default 8) from the
client node, and the conditions one after the other on one testbed —
baseline (no migration), clean, loss-1%, loss-5% (loss on the client's link),
bw-uncompressed and bw-zstd (the image path limited to --mgmt-rate) — each
with --migrations migrations (default 6); per-condition CSVs, timing files,
summary.json, three plots and report.md. Defaults there: --steady-state 5,
--post-migration 4 (about four minutes in all).`,
		Example: `  cflow experiment --steady-state 30 --post-migration 30 --migrations 25
  cflow experiment --steady-state 5 --post-migration 5 --migrations 4 --out /tmp/results
  cflow experiment --migrations 4 --delay 10ms --loss 0.5%            # the client's link
  cflow experiment --migrations 4 --impair hostA-mgmt:rate=100mbit     # image transfer path
  cflow experiment --workload quic                                      # all six QUIC conditions
  cflow experiment --workload quic --conditions clean,loss-1% --migrations 2 --connections 2 --steady-state 2 --post-migration 2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch q.workload {
			case "ws", "":
				if err := q.refuseWith(cmd, "ws", "conditions", "memory-mib", "mgmt-rate"); err != nil {
					return err
				}
			case "quic":
				return runQUICExperiment(cmd, g, &q, &imp, steady, post, o)
			default:
				return fmt.Errorf("%w: --workload %q: ws or quic", experiment.ErrBadOptions, q.workload)
			}
			if steady < 0 || post < 0 {
				return fmt.Errorf("%w: --steady-state and --post-migration must not be negative", experiment.ErrBadOptions)
			}
			var err error
			if o.Impair, err = imp.parse(cmd); err != nil {
				return fmt.Errorf("%w: %v", experiment.ErrBadOptions, err)
			}
			o.SteadyState = time.Duration(steady * float64(time.Second))
			o.PostMigration = time.Duration(post * float64(time.Second))
			o.Prefix = g.prefix
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find the cflow executable: %w", err)
			}
			if exe, err = filepath.EvalSymlinks(exe); err != nil {
				return fmt.Errorf("find the cflow executable: %w", err)
			}
			o.Binary = exe
			o.Progress = cmd.OutOrStdout()
			if err := o.Validate(); err != nil {
				return err
			}
			if os.Geteuid() != 0 {
				return errors.New("the experiment needs root (network namespaces, runc, CRIU)")
			}
			res, err := experiment.Run(cmd.Context(), o)
			if res != nil && res.Dir != "" {
				s := res.Summary
				w := cmd.OutOrStdout()
				fmt.Fprintf(w, "\nmigrations: %d, failed: %d; connection drops: %d; frames: %d received, %d lost, %d duplicated\n",
					s.Migrations, s.Failed, s.ConnectionDrops, s.FramesReceived, s.FramesLost, s.FramesDuplicated)
				if s.DowntimeMs.N > 0 {
					fmt.Fprintf(w, "client-visible downtime: p50 %.0f ms, p95 %.0f ms, p99 %.0f ms, max %.0f ms; time to ready p50 %.0f ms\n",
						s.DowntimeMs.P50, s.DowntimeMs.P95, s.DowntimeMs.P99, s.DowntimeMs.Max, s.TimeToReadyMs.P50)
				}
				fmt.Fprintf(w, "report: %s\n", filepath.Join(res.Dir, "report.md"))
			}
			return err
		},
	}
	f := cmd.Flags()
	f.Float64Var(&steady, "steady-state", 15, "seconds before the first migration")
	f.Float64Var(&post, "post-migration", 30, "seconds after each migration")
	f.IntVar(&o.Migrations, "migrations", 1, "number of migrations (alternating hostA -> hostB and back)")
	f.IntVar(&o.Connections, "connections", 4, "WebSocket connections of the load generator")
	f.IntVar(&o.FPS, "fps", 30, "data frames per second per connection")
	f.BoolVar(&o.Quiesce, "quiesce", false, "quiesce the server with SIGUSR2 and drain send queues before each checkpoint, as the seed did")
	f.StringVar(&o.OutDir, "out", "results", "directory for run_YYYYMMDD_HHMMSS/")
	f.BoolVar(&o.NoPlots, "no-plots", false, "skip the plots")
	imp.register(f)
	q.register(f)
	return cmd
}

// quicFlags are the flags of `cflow experiment --workload quic`.
type quicFlags struct {
	workload, conditions, mgmtRate string
	memoryMiB                      int
}

func (f *quicFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.workload, "workload", "ws", "ws: the WebSocket experiment; quic: the QUIC server-migration experiment (conditions, see docs/experiment.md)")
	fs.StringVar(&f.conditions, "conditions", "", "quic: comma-separated subset of baseline,clean,loss-1%,loss-5%,bw-uncompressed,bw-zstd (any loss-P% works); default all")
	fs.IntVar(&f.memoryMiB, "memory-mib", 16, "quic: self-checking memory the server holds, so images are not tiny")
	fs.StringVar(&f.mgmtRate, "mgmt-rate", "50mbit", "quic: rate of hostA-mgmt and hostB-mgmt (the image path) in the bw-* conditions")
}

// refuseWith rejects flags that the chosen workload does not read, so
// that nobody believes they had an effect.
func (f *quicFlags) refuseWith(cmd *cobra.Command, workload string, names ...string) error {
	for _, n := range names {
		if cmd.Flags().Changed(n) {
			return fmt.Errorf("%w: --%s does not apply to --workload %s", experiment.ErrBadOptions, n, workload)
		}
	}
	return nil
}

// QUIC defaults where the WebSocket ones would make a long run: the whole
// QUIC experiment (six conditions) takes a few minutes with these.
const (
	quicDefaultSteady      = 5.0
	quicDefaultPost        = 4.0
	quicDefaultMigrations  = 6
	quicDefaultConnections = 8
)

func runQUICExperiment(cmd *cobra.Command, g *globals, q *quicFlags, imp *impairFlags, steady, post float64, wo experiment.Options) error {
	// --loss and --rate would collide with the conditions' own
	// impairments; --impair with the image path's limit.
	if err := q.refuseWith(cmd, "quic", "fps", "quiesce", "loss", "rate", "impair"); err != nil {
		return err
	}
	fl := cmd.Flags()
	if !fl.Changed("steady-state") {
		steady = quicDefaultSteady
	}
	if !fl.Changed("post-migration") {
		post = quicDefaultPost
	}
	o := experiment.QUICOptions{Migrations: wo.Migrations, Connections: wo.Connections, MemoryMiB: q.memoryMiB,
		OutDir: wo.OutDir, NoPlots: wo.NoPlots, Prefix: g.prefix, Progress: cmd.OutOrStdout(), Seed: imp.seed}
	if !fl.Changed("migrations") {
		o.Migrations = quicDefaultMigrations
	}
	if !fl.Changed("connections") {
		o.Connections = quicDefaultConnections
	}
	if steady < 0 || post < 0 {
		return fmt.Errorf("%w: --steady-state and --post-migration must not be negative", experiment.ErrBadOptions)
	}
	o.SteadyState = time.Duration(steady * float64(time.Second))
	o.PostMigration = time.Duration(post * float64(time.Second))
	var err error
	if o.Conditions, err = experiment.ParseConditions(q.conditions); err != nil {
		return fmt.Errorf("%w: --conditions: %v", experiment.ErrBadOptions, err)
	}
	if o.MgmtRate, err = testbed.ParseRate(q.mgmtRate); err != nil {
		return fmt.Errorf("%w: --mgmt-rate: %v", experiment.ErrBadOptions, err)
	}
	o.MgmtRateText = q.mgmtRate
	if imp.delay != "" || imp.jitter != "" {
		im, err := testbed.ParseImpairment(imp.delay, imp.jitter, "", "")
		if err != nil {
			return fmt.Errorf("%w: %v", experiment.ErrBadOptions, err)
		}
		o.Delay, o.Jitter = im.Delay, im.Jitter
	}
	if o.Binary, err = selfBinary(); err != nil {
		return err
	}
	if err := o.Validate(); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("the experiment needs root (network namespaces, runc, CRIU)")
	}
	res, err := experiment.RunQUIC(cmd.Context(), o)
	if res != nil && res.Dir != "" {
		w := cmd.OutOrStdout()
		fmt.Fprintln(w)
		for _, c := range res.Summary.Conditions {
			fmt.Fprintf(w, "%-16s %d/%d connections survived, %d new handshakes, %d/%d requests lost", c.Name, c.Survived, c.Connections, c.NewHandshakes, c.RequestsLost, c.RequestsSent)
			if c.InterruptionMs.N > 0 {
				fmt.Fprintf(w, "; interruption p50 %.0f ms, max %.0f ms; transfer %.0f ms", c.InterruptionMs.P50, c.InterruptionMs.Max, c.TransferMs.Mean)
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "report: %s\n", filepath.Join(res.Dir, "report.md"))
	}
	return err
}

func selfBinary() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the cflow executable: %w", err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return "", fmt.Errorf("find the cflow executable: %w", err)
	}
	return exe, nil
}

// newPlotCmd is `cflow plot RESULTS_DIR`: the twelve plots of a run (ours
// or the seed's: a metrics.csv and migration_timing_N.txt files).
func newPlotCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "plot RESULTS_DIR",
		Short: "Draw the experiment's plots (PNG, SVG, PDF) from a results directory (WebSocket: twelve; QUIC: three)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			draw := plot.All
			if experiment.IsQUICRun(args[0]) {
				draw = experiment.PlotQUIC
			}
			names, err := draw(args[0])
			for _, n := range names {
				fmt.Fprintf(cmd.OutOrStdout(), "%s.{png,svg,pdf}\n", filepath.Join(args[0], n))
			}
			return err
		},
	}
}

// impairFlags are the experiment's link impairments: --delay, --jitter,
// --loss, --rate and --seed for the client's data link (the clients' path
// to the workload), and --impair LINK:key=value,... for any link.
type impairFlags struct {
	delay, jitter, loss, rate string
	seed                      uint64
	specs                     []string
}

func (f *impairFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.delay, "delay", "", "one-way delay each way on the client's link (cflow testbed impair client --delay)")
	fs.StringVar(&f.jitter, "jitter", "", "jitter of that delay")
	fs.StringVar(&f.loss, "loss", "", "loss each way on the client's link, e.g. 0.5%")
	fs.StringVar(&f.rate, "rate", "", "rate each way on the client's link, e.g. 10mbit")
	fs.Uint64Var(&f.seed, "seed", 0, "seed of the impairments' loss and jitter (default 1, so runs repeat)")
	fs.StringArrayVar(&f.specs, "impair", nil, "impair a link: LINK:delay=D,jitter=J,loss=P,rate=R,seed=S (LINK: NODE, NODE-data or NODE-mgmt); repeatable")
}

func (f *impairFlags) parse(cmd *cobra.Command) (map[string]testbed.Impairment, error) {
	out := map[string]testbed.Impairment{}
	if f.delay != "" || f.jitter != "" || f.loss != "" || f.rate != "" {
		im, err := testbed.ParseImpairment(f.delay, f.jitter, f.loss, f.rate)
		if err != nil {
			return nil, err
		}
		im.Seed = f.seed
		if err := im.Validate(); err != nil {
			return nil, err
		}
		out[testbed.Client+"-"+testbed.LinkData] = im
	} else if cmd.Flags().Changed("seed") && len(f.specs) == 0 {
		return nil, fmt.Errorf("--seed without an impairment")
	}
	for _, s := range f.specs {
		link, im, err := testbed.ParseImpairSpec(s)
		if err != nil {
			return nil, err
		}
		if _, dup := out[link]; dup {
			return nil, fmt.Errorf("link %s is impaired twice", link)
		}
		if im.Seed == 0 {
			im.Seed = f.seed
		}
		out[link] = im
	}
	return out, nil
}
