package cli

import (
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/containerflow/containerflow/internal/workload/stream"
)

// newWorkloadCmd holds the programs that run inside containers during
// benchmarks; the cflow binary is bind-mounted into every container at
// /opt/cflow/bin.
func newWorkloadCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "workload", Short: "Workload programs run inside containers by benchmarks", Hidden: true}
	var (
		listen   string
		interval time.Duration
	)
	srv := &cobra.Command{
		Use:   "stream-server",
		Short: "Sequence-checked TCP stream server: echoes client records and sends its own",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return stream.ListenAndServe(cmd.Context(), listen, interval, slog.Default())
		},
	}
	srv.Flags().StringVar(&listen, "listen", ":9000", "TCP address")
	srv.Flags().DurationVar(&interval, "interval", 5*time.Millisecond, "interval of the server's own records")
	cmd.AddCommand(srv)
	cmd.AddCommand(newWSServerCmd())
	return cmd
}
