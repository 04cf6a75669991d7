package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/containerflow/containerflow/internal/controller"
	"github.com/containerflow/containerflow/internal/fleet"
	"github.com/containerflow/containerflow/internal/testbed"
)

// fleetClient reaches the fleet's API on the testbed's controller (its
// unix socket: root only, an operator's).
func fleetClient(g *globals) (fleet.Client, error) {
	tb, err := testbed.Open(g.prefix)
	if err != nil {
		return fleet.Client{}, err
	}
	if tb.Switch != testbed.SwitchEBPF {
		return fleet.Client{}, errors.New("the testbed's switch is a bridge: hosts and operations need the eBPF switch's controller")
	}
	tok, err := tb.Token()
	if err != nil {
		return fleet.Client{}, err
	}
	// Long enough for a ?wait= poll (see waitOperation).
	return fleet.Client{C: controller.NewClient("unix://"+tb.ControllerSocket(), controller.ClientOptions{Token: tok, Timeout: 30 * time.Second})}, nil
}

// opFlags are the flags of commands that start an operation.
type opFlags struct {
	concurrency int
	detach      bool
	asJSON      bool
}

func (o *opFlags) add(cmd *cobra.Command, concurrency bool) {
	if concurrency {
		cmd.Flags().IntVar(&o.concurrency, "concurrency", fleet.DefaultConcurrency, "migrations at once")
	}
	cmd.Flags().BoolVar(&o.detach, "detach", false, "return at once with the operation's id (follow it with cflow operation wait ID)")
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "print the operation as JSON when it ends")
}

// follow prints an operation's progress until it ends (unless detached)
// and fails when it did not succeed.
func (o *opFlags) follow(ctx context.Context, fc fleet.Client, op fleet.Operation, w io.Writer) error {
	if o.detach {
		fmt.Fprintf(w, "%s %s %s: %s (%d steps)\n", op.ID, op.Kind, op.Target, op.Status, op.Total)
		return nil
	}
	op, err := waitOperation(ctx, fc, op, w)
	if err != nil {
		return err
	}
	if o.asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(op)
	} else {
		printOperation(w, op)
	}
	if op.Status != fleet.StatusSuccess {
		return fmt.Errorf("operation %s: %s: %s", op.ID, op.Status, op.Error)
	}
	return nil
}

// waitOperation polls until the operation ends, printing each step as it
// ends. Interrupting the command leaves the operation running.
func waitOperation(ctx context.Context, fc fleet.Client, op fleet.Operation, w io.Writer) (fleet.Operation, error) {
	seen := map[int]bool{}
	fmt.Fprintf(w, "%s %s %s: %d steps, %d at once\n", op.ID, op.Kind, op.Target, op.Total, op.Concurrency)
	for {
		for i, s := range op.Steps {
			if seen[i] || s.Status == fleet.StatusPending || s.Status == fleet.StatusRunning {
				continue
			}
			seen[i] = true
			fmt.Fprintf(w, "  [%d/%d] %s\n", len(seen), op.Total, stepLine(s))
		}
		if op.Finished() {
			return op, nil
		}
		var err error
		if op, err = fc.Operation(ctx, op.ID, 5*time.Second); err != nil {
			return op, err
		}
	}
}

func stepLine(s fleet.Step) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-9s %s", s.Status, s.Container)
	if s.From != "" {
		fmt.Fprintf(&b, " %s -> %s", s.From, orDash(s.To))
	} else {
		fmt.Fprintf(&b, " on %s", orDash(s.To))
	}
	if s.DowntimeMs > 0 {
		fmt.Fprintf(&b, " (downtime %.1f ms)", s.DowntimeMs)
	}
	if s.Error != "" {
		fmt.Fprintf(&b, ": %s", s.Error)
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printOperation(w io.Writer, op fleet.Operation) {
	fmt.Fprintf(w, "%s %s %s: %s", op.ID, op.Kind, op.Target, op.Status)
	if !op.Started.IsZero() && !op.Ended.IsZero() {
		fmt.Fprintf(w, " in %s", op.Ended.Sub(op.Started).Round(time.Millisecond))
	}
	fmt.Fprintf(w, " (%d/%d steps)\n", op.Done, op.Total)
	if op.ImbalanceBefore > 0 {
		fmt.Fprintf(w, "  imbalance (max/mean load) %.3f -> %.3f planned\n", op.ImbalanceBefore, op.ImbalanceAfter)
	}
	if op.Error != "" {
		fmt.Fprintf(w, "  %s\n", op.Error)
	}
	for _, s := range op.Steps {
		fmt.Fprintf(w, "  %s\n", stepLine(s))
	}
}

func newHostCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "host", Short: "The fleet's hosts: list, evacuate, cordon, resume (docs/operations.md)"}
	var asJSON bool
	ls := &cobra.Command{
		Use: "ls", Short: "List hosts with their capacity, use and containers", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fc, err := fleetClient(g)
			if err != nil {
				return err
			}
			hosts, err := fc.Hosts(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(hosts)
			}
			printHosts(cmd.OutOrStdout(), hosts)
			return nil
		},
	}
	ls.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	var eo opFlags
	evacuate := &cobra.Command{
		Use:   "evacuate HOST",
		Short: "Move every container off HOST (it becomes unschedulable until `host resume`)",
		Long: `Plans a destination for each container of HOST by capacity (docs/planner.md)
and migrates them, --concurrency at a time, with their connections. HOST stays
unschedulable until ` + "`cflow host resume HOST`" + `. A container no other host can take
stays and its step says why; the operation then ends as failure.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fc, err := fleetClient(g)
			if err != nil {
				return err
			}
			op, err := fc.Evacuate(cmd.Context(), args[0], eo.concurrency)
			if err != nil {
				return err
			}
			return eo.follow(cmd.Context(), fc, op, cmd.OutOrStdout())
		},
	}
	eo.add(evacuate, true)
	sched := func(use, short string, on bool) *cobra.Command {
		return &cobra.Command{
			Use: use + " HOST", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				fc, err := fleetClient(g)
				if err != nil {
					return err
				}
				h, err := fc.SetSchedulable(cmd.Context(), args[0], on)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", h.Name, schedState(h.Unschedulable))
				return nil
			},
		}
	}
	cmd.AddCommand(ls, evacuate,
		sched("cordon", "Place and move nothing onto HOST (its containers stay)", false),
		sched("resume", "Make HOST schedulable again", true))
	return cmd
}

func schedState(unschedulable bool) string {
	if unschedulable {
		return "unschedulable"
	}
	return "schedulable"
}

func printHosts(w io.Writer, hosts []fleet.HostStatus) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSTATE\tCPUS REQ/CAP\tMEMORY REQ/CAP\tUSED CPUS, MEMORY\tCONTAINERS\tURL")
	for _, h := range hosts {
		state := schedState(h.Unschedulable)
		cpus, mem, used, n := "-", "-", "-", "-"
		if !h.Reachable {
			state += ", unreachable: " + h.Error
		} else {
			st := h.Stats
			cpus = fmt.Sprintf("%.2f/%.2f", st.Requested.CPUs, st.Capacity.CPUs)
			mem = fmt.Sprintf("%s/%s", mib(st.Requested.MemoryBytes), mib(st.Capacity.MemoryBytes))
			used = fmt.Sprintf("%.2f, %s", st.Used.CPUs, mib(st.Used.MemoryBytes))
			n = fmt.Sprint(len(h.Containers))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Name, state, cpus, mem, used, n, h.URL)
	}
	tw.Flush()
}

func mib(b int64) string { return fmt.Sprintf("%d MiB", b>>20) }

func newRebalanceCmd(g *globals) *cobra.Command {
	var (
		req fleet.RebalanceRequest
		o   opFlags
	)
	cmd := &cobra.Command{
		Use:   "rebalance [--max-moves K] [--threshold 1.1] [--dry-run]",
		Short: "Move containers so that no host's load exceeds the threshold times the mean, with as few moves as possible",
		Long: `Plans the fewest migrations that bring every host's load (its dominant share:
the larger of requested CPU and memory over capacity) under --threshold times
the mean (docs/planner.md), prints the plan and, unless --dry-run, runs it as
an operation.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fc, err := fleetClient(g)
			if err != nil {
				return err
			}
			req.Concurrency = o.concurrency
			a, err := fc.Rebalance(cmd.Context(), req)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			p := a.Plan
			fmt.Fprintf(w, "plan: %d moves, imbalance %.3f -> %.3f (threshold reached: %v)\n", len(p.Steps), p.ImbalanceBefore, p.ImbalanceAfter, p.Reached)
			for _, s := range p.Steps {
				fmt.Fprintf(w, "  %s\n", stepLine(s))
			}
			if len(p.Unreachable) > 0 {
				fmt.Fprintf(w, "  left out (unreachable): %s\n", strings.Join(p.Unreachable, ", "))
			}
			if req.DryRun || a.Operation == nil {
				return nil
			}
			return o.follow(cmd.Context(), fc, *a.Operation, w)
		},
	}
	cmd.Flags().IntVar(&req.MaxMoves, "max-moves", 0, "at most this many migrations (0: as many as needed)")
	cmd.Flags().Float64Var(&req.Threshold, "threshold", 0, "max/mean load to reach (default 1.1)")
	cmd.Flags().BoolVar(&req.DryRun, "dry-run", false, "print the plan only")
	o.add(cmd, true)
	return cmd
}

func newOperationCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "operation", Aliases: []string{"op"}, Short: "Long actions of the fleet: list, show, wait, cancel"}
	var asJSON bool
	ls := &cobra.Command{
		Use: "ls", Short: "List operations, newest first", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fc, err := fleetClient(g)
			if err != nil {
				return err
			}
			ops, err := fc.Operations(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(ops)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tKIND\tTARGET\tSTATUS\tSTEPS\tCREATED")
			for _, op := range ops {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\n", op.ID, op.Kind, op.Target, op.Status, op.Done, op.Total, op.Created.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	ls.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	one := func(use, short string, run func(context.Context, fleet.Client, string, io.Writer) error) *cobra.Command {
		return &cobra.Command{
			Use: use + " ID", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				fc, err := fleetClient(g)
				if err != nil {
					return err
				}
				return run(cmd.Context(), fc, args[0], cmd.OutOrStdout())
			},
		}
	}
	show := one("show", "Show an operation and its steps", func(ctx context.Context, fc fleet.Client, id string, w io.Writer) error {
		op, err := fc.Operation(ctx, id, 0)
		if err != nil {
			return err
		}
		if asJSON {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(op)
		}
		printOperation(w, op)
		return nil
	})
	show.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	wait := one("wait", "Follow an operation until it ends", func(ctx context.Context, fc fleet.Client, id string, w io.Writer) error {
		op, err := fc.Operation(ctx, id, 0)
		if err != nil {
			return err
		}
		return (&opFlags{}).follow(ctx, fc, op, w)
	})
	cancel := one("cancel", "Cancel an operation: steps not started are not run; a migration under way rolls back unless it already went live", func(ctx context.Context, fc fleet.Client, id string, w io.Writer) error {
		op, err := fc.Cancel(ctx, id)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s: cancel requested (%s, %d/%d steps)\n", op.ID, op.Status, op.Done, op.Total)
		return nil
	})
	cmd.AddCommand(ls, show, wait, cancel)
	return cmd
}

func newStatusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use: "status", Short: "The fleet at a glance: hosts, their containers, operations", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fc, err := fleetClient(g)
			if err != nil {
				return err
			}
			st, err := fc.Status(cmd.Context())
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			printHosts(w, st.Hosts)
			fmt.Fprintln(w)
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CONTAINER\tHOST\tSTATE\tIP\tCPUS REQ\tMEMORY REQ\tUSED CPUS, MEMORY")
			for _, h := range st.Hosts {
				for _, c := range h.Containers {
					used := "-"
					if u := c.Usage; u != nil {
						used = fmt.Sprintf("%.2f, %s", u.CPUs, mib(u.MemoryBytes))
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%g\t%s\t%s\n", c.Name, h.Name, c.State, c.IP, c.Requests.CPUs, mib(c.Requests.MemoryBytes), used)
				}
			}
			tw.Flush()
			if len(st.Operations) > 0 {
				fmt.Fprintln(w)
				for _, op := range st.Operations {
					fmt.Fprintf(w, "%s %s %s: %s (%d/%d steps)\n", op.ID, op.Kind, op.Target, op.Status, op.Done, op.Total)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
