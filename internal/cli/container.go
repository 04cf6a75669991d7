package cli

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/containerflow/containerflow/internal/agent"
	"github.com/containerflow/containerflow/internal/fleet"
	"github.com/containerflow/containerflow/internal/migration"
	"github.com/containerflow/containerflow/internal/pki"
	"github.com/containerflow/containerflow/internal/testbed"
)

// agents returns a client per host of the testbed named by --prefix.
func agents(g *globals) (map[string]*agent.Client, error) {
	tb, err := testbed.Open(g.prefix)
	if err != nil {
		return nil, err
	}
	tok, err := tb.Token()
	if err != nil {
		return nil, fmt.Errorf("%w (was the testbed started with agents? `cflow testbed up` starts them)", err)
	}
	out := map[string]*agent.Client{}
	if g.tls {
		if !tb.TLS {
			return nil, fmt.Errorf("--tls: testbed %s runs its agents without TLS", tb.Prefix)
		}
		id, err := tb.Identity(pki.CLI)
		if err != nil {
			return nil, err
		}
		for _, h := range tb.Hosts() {
			if out[h], err = agentTLSClient(tb, h, id); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	for _, h := range tb.Hosts() {
		out[h] = agent.NewClient("unix://"+tb.AgentSocket(h), agent.ClientOptions{Token: tok})
	}
	return out, nil
}

// hostsOf are the hosts of agents' result, in the testbed's order (hostA,
// hostB, ... sort as their letters do).
func hostsOf(cs map[string]*agent.Client) []string {
	hosts := slices.Collect(maps.Keys(cs))
	slices.Sort(hosts)
	return hosts
}

func hostClient(g *globals, host string) (*agent.Client, error) {
	cs, err := agents(g)
	if err != nil {
		return nil, err
	}
	c, ok := cs[host]
	if !ok {
		return nil, fmt.Errorf("unknown host %q (hosts: %s)", host, strings.Join(hostsOf(cs), ", "))
	}
	return c, nil
}

// findContainer returns the host that runs a container.
func findContainer(cmd *cobra.Command, g *globals, name string) (string, *agent.Client, error) {
	cs, err := agents(g)
	if err != nil {
		return "", nil, err
	}
	for _, h := range hostsOf(cs) {
		if _, err := cs[h].Get(cmd.Context(), name); err == nil {
			return h, cs[h], nil
		}
	}
	return "", nil, fmt.Errorf("container %q is not running on any host", name)
}

func newContainerCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "container", Short: "Run, list, inspect and remove containers on the testbed's hosts"}
	var (
		host, name, ip, mac string
		env                 []string
		opts                runOpts
		life                agent.Lifecycle
	)
	run := &cobra.Command{
		Use:   "run [--host H] --name N [--ip IP] [--image REF] [--mac MAC] [--env K=V] [--rm] [--restart on-failure[:N]] -- CMD [ARGS...]",
		Short: "Run a program (any program installed on the host, or the project's own) in a container",
		Long: `Runs CMD in a new container on host H (without --host, on the host the
switch controller's planner chooses: docs/operations.md), with its own network namespace holding
IP and MAC on the host's uplink, and steers the switch to it. Names and
addresses are unique across all hosts (the switch controller keeps them);
without --ip a free address of the data network is allocated and printed. The
container sees the host's /usr and /etc read-only, writable /tmp, /run,
/var/tmp and /dev/shm that are directories of its bundle (they move with it
when it migrates), and the cflow binaries at /opt/cflow/bin.

A container whose program ends stays listed as exited, with its exit code,
until ` + "`container rm`" + `; --rm removes it at once, --restart on-failure[:N]
starts it again (at most N times) when it exits with a non-zero code.`,
		Example: `  cflow container run --host hostA --name web --ip 198.18.0.2 -- python3 -m http.server 8080
  cflow container run --host hostA --name app --image registry.local/app:1 --user 1000 --volume /srv/app:/data`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := runIP(ip)
			if err != nil {
				return err
			}
			spec := agent.ContainerSpec{Name: name, IP: addr, Args: args, Env: env, Lifecycle: life}
			if err := opts.apply(&spec); err != nil {
				return err
			}
			if mac != "" {
				hw, err := net.ParseMAC(mac)
				if err != nil {
					return fmt.Errorf("--mac %q: %w", mac, err)
				}
				spec.MAC = agent.MAC(hw)
			}
			if host == "" {
				// Placed by the fleet's planner: the host with the most
				// room left for the container's requests.
				fc, err := fleetClient(g)
				if err != nil {
					return fmt.Errorf("no --host, and no controller to place it: %w", err)
				}
				if host, err = fc.Place(cmd.Context(), fleet.PlacementRequest{Name: spec.Name, CPUs: spec.Resources.CPUs, MemoryBytes: spec.Resources.MemoryBytes}); err != nil {
					return err
				}
			}
			c, err := hostClient(g, host)
			if err != nil {
				return err
			}
			info, err := c.Run(cmd.Context(), spec)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s on %s: %s %s pid %d\n", info.Name, lsState(info), info.Host, info.IP, info.MAC, info.Pid)
			return nil
		},
	}
	run.Flags().StringVar(&host, "host", "", "host to run on (hostA, hostB, ...; default: placed by the controller's planner where the most room is left)")
	run.Flags().StringVar(&name, "name", "", "container name")
	run.Flags().StringVar(&ip, "ip", "", "container IPv4 address in 198.18.0.0/24 (default: a free one, allocated)")
	run.Flags().StringVar(&mac, "mac", "", "container MAC (default 02:42 + the IP's bytes)")
	run.Flags().StringArrayVar(&env, "env", nil, "environment variable K=V (repeatable)")
	run.Flags().BoolVar(&life.AutoRemove, "rm", false, "remove the container when it exits")
	run.Flags().StringVar(&life.Restart, "restart", "", "restart policy: no, on-failure or on-failure:N")
	opts.addFlags(run.Flags())
	_ = run.MarkFlagRequired("name")

	var asJSON bool
	ls := &cobra.Command{
		Use: "ls", Short: "List containers on every host", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cs, err := agents(g)
			if err != nil {
				return err
			}
			var all []agent.ContainerInfo
			for _, h := range hostsOf(cs) {
				l, err := cs[h].List(cmd.Context())
				if err != nil {
					return fmt.Errorf("%s: %w", h, err)
				}
				all = append(all, l...)
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(all)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tHOST\tSTATE\tIP\tMAC\tPID\tCOMMAND")
			for _, c := range all {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, c.Host, lsState(c), c.IP, c.MAC, lsPid(c), truncate(fmt.Sprint(c.Args), 40))
			}
			return tw.Flush()
		},
	}
	ls.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	var (
		follow bool
		tail   int
	)
	logs := &cobra.Command{
		Use: "logs NAME [--follow] [--tail N]", Short: "Print a container's output, from every host it ran on", Args: cobra.ExactArgs(1),
		Long: `Prints the container's stdout and stderr, as kept on its current host: its
whole output since it started, on whichever hosts it ran, within its log's cap
(see docs/logs.md). --tail N starts at the last N lines. --follow goes on with
new output until the container stops or is removed, or Ctrl-C; when the
container migrates, it goes on on the new host from where it was.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cs, err := agents(g)
			if err != nil {
				return err
			}
			var hosts []*agent.Client
			for _, h := range hostsOf(cs) {
				hosts = append(hosts, cs[h])
			}
			o := agent.LogOptions{From: -1, Tail: tail, Follow: follow}
			return agent.FollowLogs(cmd.Context(), hosts, args[0], o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	logs.Flags().BoolVarP(&follow, "follow", "f", false, "go on with new output, across migrations")
	logs.Flags().IntVar(&tail, "tail", -1, "start at the last N lines (default: all that is kept)")
	rm := &cobra.Command{
		Use: "rm NAME", Short: "Stop and remove a container", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, c, err := findContainer(cmd, g, args[0])
			if err != nil {
				msg, rerr := releaseStale(cmd.Context(), g, args[0], err)
				if rerr != nil {
					return rerr
				}
				fmt.Fprintln(cmd.OutOrStdout(), msg)
				return nil
			}
			if err := c.Remove(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s removed from %s\n", args[0], h)
			return nil
		},
	}
	cmd.AddCommand(run, ls, logs, rm)
	return cmd
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

func newMigrateCmd(g *globals) *cobra.Command {
	var (
		to      string
		req     agent.MigrateRequest
		out     string
		asJSON  bool
		timeout time.Duration
		detach  bool
	)
	cmd := &cobra.Command{
		Use:   "migrate NAME --to HOST",
		Short: "Live-migrate a container, with its connections, to another host",
		Long: `Moves container NAME to HOST: the destination is pre-staged with the same IP
and MAC, the container is frozen and dumped with its TCP connections, the images
are streamed to the destination while they are written and restored, the switch
is pointed there, and the source is removed. On any failure before the switch
update the container keeps running on its host with its connections. Prints the
timing record.

--engine direct (the default) drives CRIU over its RPC with everything staged
before the freeze; --engine runc runs runc checkpoint/restore (the baseline).
--mode post-copy restores before the memory has arrived (CRIU lazy pages): the
pause no longer grows with memory, but until the last page has arrived the
container depends on its previous host, and an interruption then loses it.
--mode auto (the default) picks post-copy from 64 MiB of memory up.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if detach {
				// As an operation of the controller's fleet, which
				// outlives this command (docs/operations.md).
				fc, err := fleetClient(g)
				if err != nil {
					return err
				}
				op, err := fc.Migrate(cmd.Context(), args[0], to)
				if err != nil {
					return err
				}
				return (&opFlags{detach: true}).follow(cmd.Context(), fc, op, cmd.OutOrStdout())
			}
			from, c, err := findContainer(cmd, g, args[0])
			if err != nil {
				return err
			}
			req.To = to
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel func()
				ctx, cancel = contextWithTimeout(ctx, timeout)
				defer cancel()
			}
			res, err := c.Migrate(ctx, args[0], req)
			if res != nil {
				if out != "" {
					if werr := writeRecord(out, &res.Record); werr != nil {
						return werr
					}
				}
				if asJSON {
					_ = json.NewEncoder(cmd.OutOrStdout()).Encode(res.Record)
				} else {
					printRecord(cmd, from, &res.Record)
				}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "destination host")
	cmd.Flags().BoolVar(&detach, "detach", false, "run it as an operation of the controller's fleet and return its id at once (cflow operation wait ID); with the default options")
	cmd.Flags().StringVar(&req.Engine, "engine", "direct", "checkpoint/restore engine: direct or runc")
	cmd.Flags().StringVar(&req.Mode, "mode", "auto", "auto, stop-and-copy or post-copy")
	cmd.Flags().StringVar(&req.Compress, "compress", "", "pack the image stream on the wire: none or zstd (for slow links between hosts)")
	cmd.Flags().IntVar(&req.QuiesceSignal, "quiesce-signal", 0, "signal sent before the freeze and after the move (e.g. 12 = SIGUSR2); 0: none")
	cmd.Flags().IntVar(&req.DrainTimeoutMs, "drain-timeout-ms", 0, "wait up to this long for TCP send queues to drain before the freeze")
	cmd.Flags().StringVar(&out, "out", "", "directory to write migration_timing_N.txt/.json into")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the timing record as JSON")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "give up (and roll back) after this long")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

func printRecord(cmd *cobra.Command, from string, r *migration.Record) {
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "%s: %s -> %s %s (%s engine, %s)\n", r.Container, from, r.TargetNode, r.Status, r.Engine, r.Mode)
	fmt.Fprintf(w, "  prepare %.1f ms, freeze %.1f ms, checkpoint %.1f ms (%d bytes), transfer %.1f ms, restore %.1f ms, switch %.1f ms, resume %.1f ms\n",
		r.PrepareMs, r.FreezeMs, r.CheckpointMs, r.CheckpointB, r.TransferMs, r.RestoreMs, r.SwitchMs, r.ResumeMs)
	fmt.Fprintf(w, "  time to ready %.1f ms, total %.1f ms; %d client frames caught during the freeze handed to %s\n", r.TimeToReadyMs, r.TotalMs, r.HandoffFrames, r.TargetNode)
	if r.Mode == migration.ModePostCopy {
		fmt.Fprintf(w, "  post-copy: the last page arrived %.1f ms after the container was ready\n", r.PostCopyMs)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", r.Error)
	}
}

// writeRecord writes the next migration_timing_N.{txt,json} in dir.
func writeRecord(dir string, r *migration.Record) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for n := 1; ; n++ {
		base := filepath.Join(dir, fmt.Sprintf("migration_timing_%d", n))
		if _, err := os.Stat(base + ".txt"); os.IsNotExist(err) {
			return r.WriteFiles(base)
		}
	}
}
