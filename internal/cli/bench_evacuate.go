package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/containerflow/containerflow/internal/bench/evacbench"
)

func newBenchEvacuateCmd() *cobra.Command {
	var (
		o        evacbench.Options
		jsonPath string
	)
	cmd := &cobra.Command{
		Use:   "evacuate [--hosts 4] [--containers 24] [--concurrency 1,2,4]",
		Short: "Empty a host of many containers with live connections through the fleet, at several concurrencies side by side",
		Long: `Builds a testbed of --hosts hosts, and for each concurrency (rotated each
round) runs --containers sequence-checked stream servers on hostA with one live
connection each, evacuates hostA through the controller (cflow host evacuate),
and checks every connection. Prints the evacuation time, each container's
downtime (the migration's time to ready, and the longest silence its client
saw), drops and records lost, and removes the testbed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			o.Binary = exe
			o.Progress = cmd.ErrOrStderr()
			res, err := evacbench.Run(cmd.Context(), o)
			if res != nil {
				res.Print(cmd.OutOrStdout())
				if jsonPath != "" {
					if werr := res.WriteJSON(jsonPath); werr != nil {
						return werr
					}
					fmt.Fprintf(cmd.OutOrStdout(), "figures written to %s\n", jsonPath)
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Hosts, "hosts", 4, "testbed hosts")
	f.IntVar(&o.Containers, "containers", 24, "containers on the evacuated host")
	f.IntSliceVar(&o.Concurrency, "concurrency", []int{1, 2, 4}, "migrations at once, side by side")
	f.IntVar(&o.Rounds, "rounds", 1, "evacuations per concurrency")
	f.StringVar(&o.Prefix, "bench-prefix", os.Getenv("CFLOW_BENCH_PREFIX"), "testbed prefix (default random)")
	f.StringVar(&jsonPath, "json", "", "write the figures as JSON to this file")
	return cmd
}
