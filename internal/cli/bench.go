package cli

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/containerflow/containerflow/internal/bench/switchbench"
)

// newBenchCmd is the parent of the benchmarks; each benchmark is a
// subcommand handed in by root.go, so adding one is one more argument
// there (e.g. newBenchCmd(newBenchSwitchCmd(g), newBenchMigrateCmd(g))).
func newBenchCmd(subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmarks that print a table of figures and can write them as JSON",
	}
	cmd.AddCommand(subs...)
	return cmd
}

// benchResult is what every benchmark returns: a table and its JSON.
type benchResult interface {
	Print(io.Writer)
	WriteJSON(path string) error
}

// report prints a benchmark's table and, with --json, writes its figures.
func report(w io.Writer, res benchResult, jsonPath string) error {
	res.Print(w)
	if jsonPath == "" {
		return nil
	}
	if err := res.WriteJSON(jsonPath); err != nil {
		return err
	}
	fmt.Fprintf(w, "figures written to %s\n", jsonPath)
	return nil
}

func newBenchSwitchCmd() *cobra.Command {
	var (
		o        switchbench.Options
		jsonPath string
	)
	cmd := &cobra.Command{
		Use:   "switch",
		Short: "Measure the switch: update latency through the API, forwarding rate eBPF vs bridge, load-balancer spread",
		Long: `Builds two testbeds (PREFIX e: eBPF switch, PREFIX b: Linux bridge, same
topology), measures, prints a table and removes them. Traffic stays inside the
testbed namespaces (198.18.0.0/15).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Prefix == "" {
				o.Prefix = "cfsb"
			}
			o.Log = cmd.ErrOrStderr()
			res, err := switchbench.Run(cmd.Context(), o)
			if err != nil {
				return err
			}
			if err := report(cmd.OutOrStdout(), res, jsonPath); err != nil {
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&jsonPath, "json", "", "write the figures as JSON to this file")
	f.StringVar(&o.Prefix, "bench-prefix", os.Getenv("CFLOW_BENCH_PREFIX"), "prefix of the two bench testbeds, at most 7 characters (default cfsb)")
	f.IntVar(&o.Moves, "moves", 2000, "timed address moves through the API")
	f.IntVar(&o.Rounds, "rounds", 5, "forwarding rounds per switch")
	f.DurationVar(&o.RoundDuration, "round", 2*time.Second, "length of a forwarding round")
	f.IntVar(&o.Payload, "payload", 18, "UDP payload bytes of the forwarding test (18: 60-byte frames)")
	f.IntVar(&o.Flows, "flows", 20000, "flows of the load-balancer test")
	return cmd
}
