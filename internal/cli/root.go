package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// Version is set at build time with -ldflags "-X .../internal/cli.Version=v1.2.3";
// otherwise the VCS revision from the build info is shown.
var Version = "dev"

// errSilent marks an error whose message the command already printed.
var errSilent = errors.New("")

type globals struct {
	prefix   string
	logLevel string
	tls      bool // reach the testbed's agents over mutual TLS, not their unix sockets
}

// NewRoot builds the command tree.
func NewRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "cflow",
		Short: "Live-migrate containers with their TCP/UDP connections between hosts behind an eBPF switch",
		Long: `cflow moves running containers, with their open connections, between hosts
while a programmable switch steers their traffic. It also builds an emulated
multi-host testbed out of network namespaces so the whole thing runs on one
machine.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: lvl})))
			return nil
		},
	}
	defPrefix := os.Getenv("CFLOW_PREFIX")
	if defPrefix == "" {
		defPrefix = "cf"
	}
	root.PersistentFlags().StringVar(&g.prefix, "prefix", defPrefix, "testbed name prefix (env CFLOW_PREFIX); every namespace of the testbed starts with PREFIX-")
	root.PersistentFlags().BoolVar(&g.tls, "tls", os.Getenv("CFLOW_TLS") != "", "reach the testbed's agents over mutual TLS on the management network as identity cli, instead of their unix sockets (env CFLOW_TLS)")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.AddCommand(newVersionCmd(), newDoctorCmd(), newTestbedCmd(g), newAgentCmd(g), newContainerCmd(g), newImageCmd(g), newMigrateCmd(g), newSwitchCmd(), newBenchCmd(newBenchSwitchCmd(), newBenchMigrateCmd(g), newBenchImpairCmd(), newBenchSoakCmd(g), newBenchEvacuateCmd(), newBenchPlaceCmd()))
	root.AddCommand(newWorkloadCmd(), newCertsCmd())
	root.AddCommand(newHostCmd(g), newRebalanceCmd(g), newOperationCmd(g), newStatusCmd(g))
	root.AddCommand(newExperimentCmd(g), newPlotCmd(), newLoadgenCmd())
	return root
}

// Execute runs the CLI and returns the process exit code.
func Execute() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := NewRoot()
	if err := root.ExecuteContext(ctx); err != nil {
		if !errors.Is(err, errSilent) {
			fmt.Fprintln(os.Stderr, "cflow:", err)
		}
		return 1
	}
	return 0
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			printVersion(cmd.OutOrStdout())
		},
	}
}

func printVersion(w io.Writer) {
	v, rev, goV := Version, "", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		goV = bi.GoVersion
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = s.Value[:12]
			}
		}
	}
	fmt.Fprintf(w, "cflow %s", v)
	if rev != "" {
		fmt.Fprintf(w, " (%s)", rev)
	}
	fmt.Fprintf(w, " %s\n", goV)
}

func contextWithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}
