package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/containerflow/containerflow/internal/loadgen"
)

// newLoadgenCmd is `cflow loadgen`: the experiment's load generator, also
// usable on its own against any server speaking the seed's protocol.
func newLoadgenCmd() *cobra.Command {
	var (
		target, metricsAddr string
		duration            time.Duration
		cfg                 loadgen.Config
	)
	cmd := &cobra.Command{
		Use:   "loadgen",
		Short: "WebSocket load generator: N connections, pings, RTT percentiles, frame sequence checks; metrics on :9090",
		Example: `  cflow loadgen --server ws://198.18.0.2:8080/ws --connections 4
  cflow testbed exec client -- cflow loadgen --server http://198.18.0.2:8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			u, err := wsURL(target)
			if err != nil {
				return err
			}
			if cfg.Connections < 1 {
				return fmt.Errorf("--connections must be at least 1, not %d", cfg.Connections)
			}
			if cfg.PingInterval <= 0 {
				return fmt.Errorf("--ping-interval must be positive")
			}
			cfg.URL, cfg.Log = u, slog.Default()
			g, err := loadgen.New(cfg)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if duration > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, duration)
				defer cancel()
			}
			return g.ListenAndRun(ctx, metricsAddr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&target, "server", "ws://127.0.0.1:8080/ws", "server: ws://HOST:PORT/ws, or the seed's http://HOST:PORT (/ws is added)")
	f.StringVar(&metricsAddr, "metrics", ":9090", "metrics address (/metrics resets the interval; /report is cumulative)")
	f.IntVar(&cfg.Connections, "connections", 4, "concurrent WebSocket connections")
	f.DurationVar(&cfg.RampUp, "ramp-up", 200*time.Millisecond, "delay between opening connections")
	f.DurationVar(&cfg.PingInterval, "ping-interval", 100*time.Millisecond, "ping interval per connection")
	f.DurationVar(&cfg.RTTCap, "rtt-cap", time.Second, "RTTs at or above this are left out of the seed's RTT figures (still counted, and in the uncapped ones)")
	f.DurationVar(&cfg.GapMin, "gap-min", 50*time.Millisecond, "frame gaps at least this long are kept for /report")
	f.DurationVar(&cfg.ReadTimeout, "read-timeout", 30*time.Second, "a connection silent this long counts as dropped")
	f.BoolVar(&cfg.NoReconnect, "no-reconnect", false, "leave dropped connections down (the seed's behaviour)")
	f.DurationVar(&duration, "duration", 0, "stop after this long (0: until interrupted)")
	cmd.AddCommand(newLoadgenQUICCmd())
	return cmd
}

// wsURL accepts ws:// URLs and the seed's http:// base URLs.
func wsURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("--server %q: want ws://HOST:PORT/ws or http://HOST:PORT", s)
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	case "ws", "wss":
	default:
		return "", fmt.Errorf("--server %q: scheme must be ws, wss, http or https", s)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/ws"
	}
	u.Path = "/" + strings.TrimLeft(u.Path, "/")
	return u.String(), nil
}
