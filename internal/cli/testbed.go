package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/containerflow/containerflow/internal/nsrun"
	"github.com/containerflow/containerflow/internal/testbed"
)

func newTestbedCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "testbed",
		Short: "Build, inspect and remove the emulated multi-host testbed",
		Long: `The testbed emulates the seed experiment's hosts on one machine with network
namespaces: PREFIX-switch, PREFIX-hostA, PREFIX-hostB (and PREFIX-hostC ... with
` + "`up --hosts N`" + `) and PREFIX-client, each edge node linked to its own port of
the switch. Data network 198.18.0.0/24, management network 198.19.0.0/24;
nothing is routed outside.`,
	}
	cmd.AddCommand(
		newTestbedUpCmd(g),
		&cobra.Command{
			Use:   "down",
			Short: "Remove the testbed and anything left of it (idempotent)",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if err := testbed.Down(g.prefix); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "testbed %s is down\n", g.prefix)
				return nil
			},
		},
		newTestbedStatusCmd(g),
		newTestbedExecCmd(g),
		newTestbedSmokeCmd(g),
		newTestbedImpairCmd(g),
		newTestbedImpairRelayCmd(g),
	)
	return cmd
}

func newTestbedStatusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the testbed's nodes, links, addresses and container namespaces",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tb, err := testbed.Open(g.prefix)
			if err != nil {
				return err
			}
			st, err := tb.Status()
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(st); err != nil {
					return err
				}
			} else {
				st.Print(cmd.OutOrStdout())
			}
			if !st.Healthy() {
				return errSilentf(cmd, "testbed "+tb.Prefix+" is not healthy (missing namespace or link down)")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print status as JSON")
	return cmd
}

func newTestbedExecCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "exec NODE -- CMD [ARGS...]",
		Short: "Run a command inside a node (switch, hostA, hostB, ..., client) or a container namespace (HOST/NAME)",
		Example: `  cflow testbed exec client -- ip -br addr
  cflow testbed exec hostA/web -- ss -tn`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 || cmd.ArgsLenAtDash() != 1 {
				return fmt.Errorf("usage: cflow testbed exec NODE -- CMD [ARGS...]")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			tb, err := testbed.Open(g.prefix)
			if err != nil {
				return err
			}
			ns, err := tb.Netns(args[0])
			if err != nil {
				return err
			}
			if host, name, ok := strings.Cut(args[0], "/"); ok && tb.PrivateFS {
				// Named only in its agent's view: enter it through the
				// container's init instead.
				c, err := hostClient(g, host)
				if err != nil {
					return err
				}
				info, err := c.Get(cmd.Context(), name)
				if err != nil {
					return err
				}
				if info.Pid == 0 {
					return fmt.Errorf("%s: container is %s, no process to enter", args[0], info.State)
				}
				ns = fmt.Sprintf("/proc/%d/ns/net", info.Pid)
			}
			if !nsrun.Exists(ns) {
				return fmt.Errorf("%s: namespace %s does not exist", args[0], ns)
			}
			env := append(os.Environ(), "CFLOW_NODE="+args[0])
			return nsrun.Exec(ns, args[1:], env)
		},
	}
}

func newTestbedSmokeCmd(g *globals) *cobra.Command {
	var (
		keep       bool
		switchKind string
	)
	cmd := &cobra.Command{
		Use:   "smoke",
		Short: "Bring a testbed up, move a container address from hostA to hostB with new connections following it, and tear it down",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			out := cmd.OutOrStdout()
			tb, err := testbed.Up(testbed.Config{Prefix: g.prefix, Switch: switchKind})
			if err != nil {
				return err
			}
			if !keep {
				defer func() {
					if derr := testbed.Down(g.prefix); derr != nil && err == nil {
						err = derr
					}
				}()
			}
			fmt.Fprintf(out, "testbed %s up\n", tb.Prefix)
			st, err := tb.Status()
			if err != nil {
				return err
			}
			st.Print(out)
			fmt.Fprintln(out, "same-IP move through the switch:")
			if err := tb.Smoke(out); err != nil {
				return fmt.Errorf("smoke: %w", err)
			}
			if !keep {
				fmt.Fprintf(out, "testbed %s down\n", tb.Prefix)
			}
			fmt.Fprintln(out, strings.Repeat("-", 40)+"\nsmoke OK")
			return nil
		},
	}
	cmd.Flags().BoolVar(&keep, "keep", false, "leave the testbed up afterwards")
	cmd.Flags().StringVar(&switchKind, "switch", testbed.SwitchEBPF, "data-plane switch: ebpf or bridge")
	return cmd
}

func newTestbedUpCmd(g *globals) *cobra.Command {
	var (
		noAgents   bool
		noAuth     bool
		privateFS  bool
		capacity   testbed.Capacity
		insecure   bool
		switchKind string
		hosts      int
		migNet     string
		linkRate   string
	)
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Create the testbed, start the switch controller (eBPF switch) and one agent per host",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Checked here, not only by Up, whose 0 means the default:
			// --hosts 0 is a mistake, not a request for two.
			if err := testbed.ValidateHosts(hosts); err != nil {
				return fmt.Errorf("--hosts: %w", err)
			}
			cfg := testbed.Config{Prefix: g.prefix, Switch: switchKind, NoAuth: noAuth, PrivateFS: privateFS, Insecure: insecure, Hosts: hosts, HostCapacity: capacity,
				MigrationNet: migNet}
			if linkRate != "" {
				r, err := testbed.ParseRate(linkRate)
				if err != nil {
					return fmt.Errorf("--link-rate %q: want a rate with tc's units, e.g. 100mbit", linkRate)
				}
				cfg.LinkRate = r
			}
			if !noAgents {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				cfg.AgentBinary = exe
			}
			tb, err := testbed.Up(cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "testbed %s is up with the %s switch (state in %s)\n", tb.Prefix, tb.Switch, tb.Dir())
			fmt.Fprintf(cmd.OutOrStdout(), "hosts: %s\n", strings.Join(tb.Hosts(), ", "))
			if tb.PrivateFS && !noAgents {
				fmt.Fprintln(cmd.OutOrStdout(), "private fs: each agent has its own /tmp, /var/tmp, /dev/shm, /run/netns and state directory")
			}
			if !noAgents {
				if tb.NoAuth {
					fmt.Fprintln(cmd.OutOrStdout(), "no auth: the controller and the agents accept writes without a token")
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "bearer token of the controller and the agents: %s\n", tb.TokenFile())
				}
				fmt.Fprintf(cmd.OutOrStdout(), "mutual TLS between the agents and to the controller (%s); certificates in %s\n", testbed.ControllerTLSURL(), tb.PKIDir())
				if tb.Insecure {
					fmt.Fprintf(cmd.OutOrStdout(), "insecure: the seed's endpoints also on plain %s, the agents on plain port %d\n", testbed.ControllerURL(), testbed.AgentPlainPort)
				}
				if tb.MigratesOverData() {
					fmt.Fprintln(cmd.OutOrStdout(), "migration over the data network: agents call each other at the hosts' data addresses (198.18.0.x), through the switch")
				}
				if tb.LinkRate > 0 {
					fmt.Fprintf(cmd.OutOrStdout(), "link rate %s: each agent schedules its eth0 with a live and a migration class\n", testbed.FormatRate(tb.LinkRate))
				}
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&hosts, "hosts", testbed.DefaultHosts, fmt.Sprintf("number of hosts, %d to %d: hostA, hostB, hostC, ... (address plan in docs/testbed.md)", testbed.MinHosts, testbed.MaxHosts))
	cmd.Flags().Float64Var(&capacity.CPUs, "host-cpus", 0, "CPUs each host offers its containers' requests (default: the machine's; the hosts share it)")
	cmd.Flags().StringVar(&capacity.Memory, "host-memory", "", "memory each host offers its containers' requests, e.g. 4GiB (default: the machine's)")
	cmd.Flags().BoolVar(&noAgents, "no-agents", false, "do not start the switch controller and the host agents")
	cmd.Flags().BoolVar(&noAuth, "no-auth", false, "start the controller and the agents without a bearer token (the seed's scripts send none; implies --insecure); anyone on the management network can then write through the plain listeners")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "keep plain HTTP next to mutual TLS: the controller's seed endpoints on "+testbed.ControllerURL()+" (the seed's scripts), the agents on plain port 7071 (bench --compare-tls)")
	cmd.Flags().StringVar(&switchKind, "switch", testbed.SwitchEBPF, "data-plane switch: ebpf (eBPF switch with its controller on "+testbed.ControllerTLSURL()+") or bridge (Linux bridge)")
	cmd.Flags().StringVar(&migNet, "migration-net", testbed.MigrationNetMgmt, "network the agents call each other on, and checkpoint images cross: mgmt (the management bridge) or data (the hosts' data addresses through the switch, sharing the links with the containers' traffic)")
	cmd.Flags().StringVar(&linkRate, "link-rate", "", "pass --link-rate RATE (e.g. 100mbit) to every agent: each schedules its eth0 at RATE with a live and a migration class (default off)")
	cmd.Flags().BoolVar(&privateFS, "private-fs", false, "run each agent in a mount namespace of its own with private /tmp, /var/tmp, /dev/shm, /run/netns and state directory, as on hosts that share no filesystem (docs/testbed.md)")
	return cmd
}
