package cli

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/containerflow/containerflow/internal/workload/ws"
)

// newWSServerCmd is `cflow workload ws-server`, the experiment's workload:
// it runs inside the container as /opt/cflow/bin/cflow, so the container
// needs no second binary.
func newWSServerCmd() *cobra.Command {
	var (
		listen, metricsAddr string
		cfg                 ws.Config
	)
	cmd := &cobra.Command{
		Use:   "ws-server",
		Short: "WebSocket streaming server (the seed's workload): frames at --fps, ping echoes, metrics; SIGUSR2 toggles quiesce",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.FPS <= 0 || cfg.FPS > 10000 {
				return fmt.Errorf("--fps must be 1-10000, not %d", cfg.FPS)
			}
			cfg.Log = slog.Default()
			s := ws.New(cfg)
			// SIGUSR2 toggles quiesce, as in the seed: the migration sends
			// it before the checkpoint and again after the restore.
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, syscall.SIGUSR2)
			defer signal.Stop(sig)
			go func() {
				for range sig {
					s.ToggleQuiesce()
				}
			}()
			return s.ListenAndServe(cmd.Context(), listen, metricsAddr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", ":8080", "WebSocket address (path /ws)")
	f.StringVar(&metricsAddr, "metrics", ":8081", "metrics address (/metrics: JSON, or Prometheus text with ?format=prometheus)")
	f.IntVar(&cfg.FPS, "fps", 30, "data frames per second per client")
	f.IntVar(&cfg.PaddingBytes, "padding", 512, "padding bytes per frame")
	f.DurationVar(&cfg.StalePing, "stale-ping", time.Second, "pings older than this are not echoed")
	f.IntVar(&cfg.MaxWriteErrors, "max-write-errors", 30, "consecutive write errors before a client is given up")
	f.IntVar(&cfg.EchoQueue, "echo-queue", 64, "echoes buffered for a client's writer")
	return cmd
}
