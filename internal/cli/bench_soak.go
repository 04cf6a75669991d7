package cli

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/containerflow/containerflow/internal/bench/soakbench"
)

// newBenchSoakCmd runs many migrations with faults and checks nothing is
// lost, dropped without cause, or left behind.
func newBenchSoakCmd(g *globals) *cobra.Command {
	var (
		o         soakbench.Options
		jsonPath  string
		workloads []string
	)
	cmd := &cobra.Command{
		Use:   "soak",
		Short: "Migrate a streaming TCP workload many times with injected faults; report losses, drops and resource drift",
		Long: `Builds a fresh testbed, runs the sequence-checked TCP stream workload in a
container and migrates it between hostA and hostB --migrations times. With
probability --faults per migration a fault is injected from outside, at a
random time drawn from --seed: CRIU killed (source or destination), an agent
killed -9 and restarted, the switch controller killed and restarted, an image
file corrupted while it is written, the image stream cut (ss -K), the
destination's management link dropping everything for 1-3 s, the
destination's container namespace deleted during prepare.

After each migration it finds where the container runs and checks every
connection still streams; a container lost is replaced (and counted). At the
end: outcomes per fault, bytes lost or duplicated, every dropped connection
with the fault that explains it (or not), the agents' and controller's RSS,
fds, threads and goroutines, and what the testbed holds on the host (mounts,
cgroups, nftables tables, namespaces, bpffs pins, runtime, tmpfs and temp
files) before the first container and after the last one is removed. Exits
non-zero unless all of it is within bounds (see docs/soak.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, w := range workloads {
				if w != "stream" {
					return fmt.Errorf("--workload %q: only stream is soaked (see docs/soak.md)", w)
				}
			}
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			o.Binary = exe
			o.Progress = cmd.OutOrStdout()
			if cmd.Flags().Changed("prefix") {
				o.Prefix = g.prefix
			}
			if jsonPath != "" {
				f, err := os.Create(jsonPath)
				if err != nil {
					return fmt.Errorf("--json: %w", err)
				}
				f.Close()
			}
			res, err := soakbench.Run(cmd.Context(), o)
			if res != nil {
				if werr := report(cmd.OutOrStdout(), res, jsonPath); werr != nil {
					return werr
				}
			}
			if err != nil {
				return err
			}
			if !res.Pass {
				return fmt.Errorf("soak failed: %d verdicts", len(res.Verdicts))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Migrations, "migrations", 100, "number of migrations (alternating hostA->hostB and back)")
	f.Float64Var(&o.FaultRate, "faults", 0.1, "probability of a fault per migration (0 to 1)")
	f.Int64Var(&o.Seed, "seed", 1, "seed of the fault draws: the same seed injects the same faults at the same delays")
	f.StringSliceVar(&o.Faults, "fault-kinds", nil, "fault kinds to draw from (default all): "+fmt.Sprint(soakbench.AllFaults))
	f.StringSliceVar(&workloads, "workload", []string{"stream"}, "workloads: stream (the sequence-checked TCP stream)")
	f.IntVar(&o.Connections, "connections", 4, "concurrent TCP connections")
	f.DurationVar(&o.Interval, "interval", 10*time.Millisecond, "interval between records, each direction")
	f.DurationVar(&o.Settle, "settle", 200*time.Millisecond, "pause after each migration (after the check that it streams)")
	f.IntVar(&o.SampleEvery, "sample-every", 10, "sample the daemons' RSS, fds, threads and goroutines every N migrations")
	f.StringVar(&o.LogsDir, "logs", "", "copy the agents', controller's and failed migrations' logs here before the testbed is removed")
	f.StringVar(&jsonPath, "json", "", "write the result as JSON to this file")
	return cmd
}
