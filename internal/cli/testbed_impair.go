package cli

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/containerflow/containerflow/internal/testbed"
)

func newTestbedImpairCmd(g *globals) *cobra.Command {
	var (
		delay, jitter, loss, rate, mechanism string
		seed                                 uint64
		limit                                int
		clear                                bool
	)
	cmd := &cobra.Command{
		Use:   "impair LINK (--delay D --jitter J --loss P --rate R [--seed S] | --clear)",
		Short: "Delay, drop and rate-limit both directions of a link (netem, or a userspace relay where the kernel has no netem)",
		Long: `LINK is NODE or NODE-data (the node's data link to the switch, eth0 <-> sw-NODE)
or NODE-mgmt (its management link, mgmt0 <-> mg-NODE, which carries the agents'
APIs and checkpoint image transfer); NODE is a host of the testbed (hostA,
hostB, ...) or client.

Each direction gets the whole impairment: --delay is one-way (a round trip
across the link gains twice it), --jitter spreads it uniformly over
delay±jitter without reordering, --loss drops that share of frames, --rate
serialises frames at that rate (tc units: bit, kbit, mbit, gbit; bps, kbps,
mbps are bytes/s). --seed makes drops and jitter repeat. Impairing a link
again replaces its impairment; --clear removes it (no-op on a clean link).
'cflow testbed status' shows impaired links.`,
		Example: `  cflow testbed impair client --delay 20ms --jitter 2ms --loss 0.5% --seed 1
  cflow testbed impair hostA-mgmt --rate 100mbit
  cflow testbed impair client --clear`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := testbed.ParseLink(args[0]); err != nil {
				return err
			}
			tb, err := testbed.Open(g.prefix)
			if err != nil {
				return err
			}
			if clear {
				for _, f := range []string{"delay", "jitter", "loss", "rate", "seed", "limit", "mechanism"} {
					if cmd.Flags().Changed(f) {
						return fmt.Errorf("--clear takes no --%s", f)
					}
				}
				if err := tb.ClearImpairment(args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: no impairment\n", args[0])
				return nil
			}
			im, err := testbed.ParseImpairment(delay, jitter, loss, rate)
			if err != nil {
				return err
			}
			im.Seed, im.Limit = seed, limit
			if err := tb.ImpairWith(args[0], im, mechanism); err != nil {
				return err
			}
			ims, err := tb.Impairments()
			if err != nil {
				return err
			}
			l, _ := testbed.ParseLink(args[0])
			for _, li := range ims {
				if li.Link == l.String() {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: %s each way (%s)\n", li.Link, li.Impairment, li.Mechanism)
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&delay, "delay", "", "one-way delay per direction, e.g. 10ms")
	f.StringVar(&jitter, "jitter", "", "uniform spread of the delay (at most the delay), e.g. 2ms")
	f.StringVar(&loss, "loss", "", "share of frames dropped per direction, e.g. 1% or 0.5%")
	f.StringVar(&rate, "rate", "", "rate per direction, e.g. 500kbit, 10mbit, 1gbit")
	f.Uint64Var(&seed, "seed", 0, "seed of the loss and jitter draws (0: a random one, shown and recorded)")
	f.IntVar(&limit, "limit", 0, "rate queue in full-size frames (default 1000, as netem)")
	f.StringVar(&mechanism, "mechanism", testbed.MechanismAuto, "auto (netem if the kernel has it, else relay), netem or relay")
	f.BoolVar(&clear, "clear", false, "remove the link's impairment")
	return cmd
}

// newTestbedImpairRelayCmd is the relay process Impair starts; not for
// people.
func newTestbedImpairRelayCmd(g *globals) *cobra.Command {
	var link, spec string
	cmd := &cobra.Command{
		Use:    "impair-relay",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var im testbed.Impairment
			if err := json.Unmarshal([]byte(spec), &im); err != nil {
				return fmt.Errorf("--spec: %w", err)
			}
			return testbed.RelayMain(g.prefix, link, im)
		},
	}
	cmd.Flags().StringVar(&link, "link", "", "link to impair")
	cmd.Flags().StringVar(&spec, "spec", "", "impairment as JSON")
	return cmd
}
