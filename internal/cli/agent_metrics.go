package cli

import (
	"github.com/spf13/cobra"
)

// newAgentMetricsCmd prints one agent's Prometheus metrics, reached as the
// other testbed commands reach it: its unix socket, or mutual TLS as cli
// with --tls.
func newAgentMetricsCmd(g *globals) *cobra.Command {
	var host string
	cmd := &cobra.Command{
		Use:   "metrics --host H",
		Short: "Print a testbed agent's Prometheus metrics (GET /metrics)",
		Long: `Prints what GET /metrics of host H's agent serves, in the Prometheus text
format: containers by state, capacity, requests and use of the host and of
each container, migrations by role and result, downtime and duration
histograms (docs/metrics.md).`,
		Example: `  cflow agent metrics --host hostA
  cflow --tls agent metrics --host hostB | grep cflow_agent_migrations_total`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := hostClient(g, host)
			if err != nil {
				return err
			}
			b, err := c.MetricsText(cmd.Context())
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	cmd.Flags().StringVar(&host, "host", "", "the agent's host (hostA, hostB, ...)")
	_ = cmd.MarkFlagRequired("host")
	return cmd
}
