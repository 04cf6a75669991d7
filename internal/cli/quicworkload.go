package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/containerflow/containerflow/internal/workload/quic"
)

// newQUICServerCmd is `cflow workload quic-server`, run inside a container
// as /opt/cflow/bin/cflow (or from an image).
func newQUICServerCmd() *cobra.Command {
	var (
		listen    string
		interval  time.Duration
		memoryMiB int
	)
	cmd := &cobra.Command{
		Use:   "quic-server",
		Short: "Sequence-checked QUIC server: answers request streams, sends a checksummed download stream, echoes datagrams",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if memoryMiB < 0 {
				return fmt.Errorf("--memory-mib must not be negative, not %d", memoryMiB)
			}
			holdBallast(cmd.Context(), memoryMiB)
			return quic.ListenAndServe(cmd.Context(), listen, interval, slog.Default())
		},
	}
	cmd.Flags().StringVar(&listen, "listen", ":4433", "UDP address")
	cmd.Flags().DurationVar(&interval, "interval", 10*time.Millisecond, "interval between download chunks, per connection")
	cmd.Flags().IntVar(&memoryMiB, "memory-mib", 0, "hold this much touched, self-checking memory (MiB), so migrations have images of a realistic size; checked on SIGUSR1 and once a minute")
	return cmd
}

// newLoadgenQUICCmd is `cflow loadgen quic`: the client side of the QUIC
// workload, run on the client node.
func newLoadgenQUICCmd() *cobra.Command {
	var (
		cfg      quic.ClientConfig
		duration time.Duration
		jsonOut  string
	)
	cmd := &cobra.Command{
		Use:     "quic",
		Short:   "QUIC load generator: N connections of request streams + a download stream, every sequence checked; QUIC loss/PTO counts from quic-go's qlog events",
		Example: `  cflow testbed exec client -- cflow loadgen quic --addr 198.18.0.2:4433 --conns 8 --duration 30s --json out.json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Addr == "" {
				return fmt.Errorf("--addr is required")
			}
			if cfg.Conns < 1 {
				return fmt.Errorf("--conns must be at least 1, not %d", cfg.Conns)
			}
			ctx := cmd.Context()
			start := time.Now()
			stats, err := quic.Run(ctx, cfg, duration)
			if err != nil {
				return err
			}
			printQUICSummary(cmd.OutOrStdout(), stats)
			if jsonOut != "" {
				b, err := json.MarshalIndent(quicReport{Addr: cfg.Addr, Start: start, End: time.Now(), Interval: cfg.Interval.String(), Conns: stats}, "", "  ")
				if err != nil {
					return err
				}
				if err := os.WriteFile(jsonOut, append(b, '\n'), 0o644); err != nil {
					return err
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Addr, "addr", "", "server UDP address IP:PORT")
	f.IntVar(&cfg.Conns, "conns", 4, "concurrent QUIC connections")
	f.DurationVar(&cfg.Interval, "interval", 10*time.Millisecond, "request interval per connection")
	f.DurationVar(&cfg.MinGap, "gap-min", 50*time.Millisecond, "silences at least this long are kept (JSON) and counted")
	f.IntVar(&cfg.ChunkSize, "chunk-size", quic.DefaultChunkSize, "download payload bytes per chunk")
	f.BoolVar(&cfg.Datagrams, "datagrams", false, "also send a datagram every interval and count the echoes")
	f.BoolVar(&cfg.NoReconnect, "no-reconnect", false, "leave a failed connection down")
	f.DurationVar(&duration, "duration", 30*time.Second, "how long to run (Ctrl-C stops early)")
	f.StringVar(&jsonOut, "json", "", "write every connection's stats, gaps with timestamps included, to this file")
	return cmd
}

type quicReport struct {
	Addr     string
	Start    time.Time
	End      time.Time
	Interval string
	Conns    []quic.ConnStats
}

func printQUICSummary(w io.Writer, stats []quic.ConnStats) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "conn\tsent\tanswered\tlost\tdup\tp50 ms\tp99 ms\tchunks\tchunk lost\tgaps\tmax gap ms\thandshakes\tdrops\tquic lost\tPTOs\t")
	for _, s := range stats {
		var maxGap time.Duration
		for _, g := range s.Gaps {
			maxGap = max(maxGap, g.Len)
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%.2f\t%.2f\t%d\t%d\t%d\t%.0f\t%d\t%d\t%d\t%d\t\n",
			s.Conn, s.Requests, s.Responses.Received-s.Responses.Duplicated, s.Unanswered(), s.Responses.Duplicated,
			s.RespP50Ms, s.RespP99Ms, s.Download.Received, s.Download.Lost, len(s.Gaps), float64(maxGap)/1e6,
			s.QUIC.Handshakes, s.Drops, s.QUIC.PacketsLost, s.QUIC.PTOs)
	}
	tw.Flush()
	for _, s := range stats {
		if err := s.Clean(); err != nil {
			fmt.Fprintf(w, "conn %d: %v\n", s.Conn, err)
		}
	}
}
