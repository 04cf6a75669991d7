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
Ctrl-C, after writing what it measured so far. See docs/experiment.md.`,
		Example: `  cflow experiment --steady-state 30 --post-migration 30 --migrations 25
  cflow experiment --steady-state 5 --post-migration 5 --migrations 4 --out /tmp/results
  cflow experiment --migrations 4 --delay 10ms --loss 0.5%            # the client's link
  cflow experiment --migrations 4 --impair hostA-mgmt:rate=100mbit     # image transfer path`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
	return cmd
}

// newPlotCmd is `cflow plot RESULTS_DIR`: the twelve plots of a run (ours
// or the seed's: a metrics.csv and migration_timing_N.txt files).
func newPlotCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "plot RESULTS_DIR",
		Short: "Draw the experiment's twelve plots (PNG, SVG, PDF) from a results directory",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			names, err := plot.All(args[0])
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
