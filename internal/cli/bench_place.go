package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/containerflow/containerflow/internal/bench/placebench"
)

// newBenchPlaceCmd times the placement planner on a simulated cluster;
// it needs no testbed and no privileges.
func newBenchPlaceCmd() *cobra.Command {
	var (
		o        placebench.Options
		jsonPath string
	)
	cmd := &cobra.Command{
		Use:   "place",
		Short: "Time the placement planner: place all containers, rebalance hot hosts, evacuate one (simulated cluster)",
		Long: `Generates --hosts hosts of mixed sizes (8-64 CPUs, 2-8 GiB per CPU) and
--containers containers whose requests fill every host to --fill in both
CPU and memory in a hidden assignment (so a placement of everything is
known to exist), all from --seed. Then, each --repeat times:

  place all   PlaceAll of every container (greedy, tabu repair, balancing)
  rebalance   Rebalance to --threshold after --hot of the hosts were
              filled to 97% with containers taken from the others
  evacuate    Evacuate of the host running the most containers

and prints per phase the median time, the violations (steps of the plan
that, replayed here independently of the planner, put a host over
capacity: must be 0), the imbalance (max/mean load) before and after,
the moves and the containers left unplaced. Exits non-zero on a
violation, a plan that differed between repeats, or a container left out
of the feasible placement. See docs/planner.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := placebench.Run(o)
			if err != nil {
				return err
			}
			if err := report(cmd.OutOrStdout(), res, jsonPath); err != nil {
				return err
			}
			if f := res.Failures(); len(f) > 0 {
				return fmt.Errorf("bench place: %s", strings.Join(f, "; "))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Hosts, "hosts", 100, "hosts in the simulated cluster")
	f.IntVar(&o.Containers, "containers", 1000, "containers to place")
	f.Uint64Var(&o.Seed, "seed", 1, "seed of the generated cluster")
	f.Float64Var(&o.Fill, "fill", 0.8, "fraction of every host's CPU and memory the containers request")
	f.Float64Var(&o.Hot, "hot", 0.1, "fraction of the hosts made hot before the rebalance")
	f.Float64Var(&o.Threshold, "threshold", 1.1, "imbalance (max/mean load) the rebalance aims for")
	f.IntVar(&o.Repeat, "repeat", 3, "runs of each phase; the median time is shown")
	f.StringVar(&jsonPath, "json", "", "write the figures as JSON to this file")
	return cmd
}
