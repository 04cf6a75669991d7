package cli

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/containerflow/containerflow/internal/bench/evacbench"
	"github.com/containerflow/containerflow/internal/testbed"
)

func newBenchEvacuateCmd() *cobra.Command {
	var (
		o        evacbench.Options
		jsonPath string
		linkRate string
	)
	cmd := &cobra.Command{
		Use:   "evacuate [--hosts 4] [--containers 24] [--concurrency 1,2,4]",
		Short: "Empty a host of many containers with live connections through the fleet, at several concurrencies side by side",
		Long: `Builds a testbed of --hosts hosts, and for each concurrency (rotated each
round) runs --containers sequence-checked stream servers on hostA with one live
connection each, evacuates hostA through the controller (cflow host evacuate),
and checks every connection. Prints the evacuation time, each container's
downtime (the migration's time to ready, and the longest silence its client
saw), drops and records lost, and removes the testbed.

--link-rate RATE --compare-class instead measures the migration traffic class
(docs/operations.md#migration-traffic-class): the images cross the data network
(testbed up --migration-net data), every uplink is scheduled at RATE, and the
evacuations alternate with the class on and off (the same qdisc without its
filters) at the first --concurrency, while two live streams that are not
migrated (a service of hostA itself, a container on hostB) are observed: their
latency and longest gap with and without the class, next to the evacuation
time and the migrated containers' downtime. Any drop or lost record fails it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			o.Binary = exe
			o.Progress = cmd.ErrOrStderr()
			if linkRate != "" {
				if o.LinkRate, err = testbed.ParseRate(linkRate); err != nil {
					return fmt.Errorf("--link-rate %q: want a rate with tc's units, e.g. 100mbit", linkRate)
				}
			}
			if o.CompareClass {
				if linkRate == "" {
					return fmt.Errorf("--compare-class needs --link-rate RATE")
				}
				// Its own defaults: a link the evacuation saturates
				// (docs/operations.md has the measurements).
				if !cmd.Flags().Changed("containers") {
					o.Containers = 10
				}
				if !cmd.Flags().Changed("concurrency") {
					o.Concurrency = []int{4}
				}
				if !cmd.Flags().Changed("memory-mib") {
					o.MemoryMiB = 8
				}
				if !cmd.Flags().Changed("rounds") {
					o.Rounds = 2
				}
			} else if linkRate != "" {
				return fmt.Errorf("--link-rate is for --compare-class")
			}
			res, err := evacbench.Run(cmd.Context(), o)
			if res != nil {
				if werr := report(cmd.OutOrStdout(), res, jsonPath); werr != nil {
					return werr
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
	f.DurationVar(&o.Interval, "interval", 10*time.Millisecond, "each connection's record interval, both ways (24 containers at 10ms keep a 2-core machine busy)")
	f.StringVar(&o.Prefix, "bench-prefix", os.Getenv("CFLOW_BENCH_PREFIX"), "testbed prefix (default random)")
	f.IntVar(&o.MemoryMiB, "memory-mib", 0, "each container holds this much touched memory (MiB): more image to move")
	f.StringVar(&linkRate, "link-rate", "", "with --compare-class: the uplinks' rate, e.g. 100mbit")
	f.BoolVar(&o.CompareClass, "compare-class", false, "evacuate over the data network with the migration traffic class on and off, observing live streams that stay (defaults then: --containers 10 --memory-mib 8 --concurrency 4 --rounds 2)")
	f.StringVar(&jsonPath, "json", "", "write the figures as JSON to this file")
	return cmd
}
