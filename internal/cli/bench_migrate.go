package cli

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/containerflow/containerflow/internal/bench/migratebench"
)

// newBenchMigrateCmd measures migrations from the client's side.
func newBenchMigrateCmd(g *globals) *cobra.Command {
	var (
		o        migratebench.Options
		jsonPath string
	)
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Migrate a streaming TCP workload back and forth and report downtime, phases and losses",
		Long: `Builds a fresh testbed, runs a sequence-checked TCP workload (records both
ways every --interval on --connections connections) in a container on hostA,
migrates it between hostA and hostB --migrations times, and reports, per
migration and as distributions: the client-visible downtime (the longest
silence any connection saw, per direction), time to ready, every phase, and
every lost, duplicated or unanswered byte. The testbed (a new one, named by
--prefix or at random) is removed afterwards.`,
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
			if o.Migrations < 1 || o.Connections < 1 || o.Interval <= 0 {
				return fmt.Errorf("--migrations and --connections must be >= 1 and --interval > 0")
			}
			if jsonPath != "" {
				f, err := os.Create(jsonPath)
				if err != nil {
					return fmt.Errorf("--json: %w", err)
				}
				f.Close()
			}
			res, err := migratebench.Run(cmd.Context(), o)
			if res != nil {
				res.Print(cmd.OutOrStdout())
				if jsonPath != "" {
					if werr := res.WriteJSON(jsonPath); werr != nil {
						return werr
					}
					fmt.Fprintf(cmd.OutOrStdout(), "wrote %s\n", jsonPath)
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
	return cmd
}
