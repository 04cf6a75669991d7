package cli

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
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
		listen    string
		interval  time.Duration
		memoryMiB int
	)
	srv := &cobra.Command{
		Use:   "stream-server",
		Short: "Sequence-checked TCP stream server: echoes client records and sends its own",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			holdBallast(cmd.Context(), memoryMiB)
			return stream.ListenAndServe(cmd.Context(), listen, interval, slog.Default())
		},
	}
	srv.Flags().StringVar(&listen, "listen", ":9000", "TCP address")
	srv.Flags().DurationVar(&interval, "interval", 5*time.Millisecond, "interval of the server's own records")
	srv.Flags().IntVar(&memoryMiB, "memory-mib", 0, "hold this much touched, self-checking memory (MiB)")
	cmd.AddCommand(srv)
	cmd.AddCommand(newWSServerCmd(), newQUICServerCmd())
	return cmd
}

// holdBallast makes a workload hold mib MiB of touched, self-checking
// memory, so a migration has that much to move (0: none). It is checked
// on SIGUSR1 (benchmarks and experiments ask after their last migration,
// when no page is in flight) and once a minute. A corrupted page ends the
// process: its clients see the drop, so no benchmark can report it as a
// success.
func holdBallast(ctx context.Context, mib int) {
	if mib <= 0 {
		return
	}
	b := stream.NewBallast(mib)
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go b.Check(ctx, usr1, time.Minute, func(err error) {
		if err != nil {
			slog.Error("memory check failed", "err", err)
			os.Exit(3)
		}
		slog.Info(stream.BallastVerified, "mib", mib)
	})
	slog.Info("holding touched memory", "mib", mib)
}
