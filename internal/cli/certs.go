package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/containerflow/containerflow/internal/pki"
)

func newCertsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "certs", Short: "Create the deployment's CA and one certificate per host, the controller and the CLI (mutual TLS)"}
	var dir string
	var ips []string
	init := &cobra.Command{
		Use:   "init --dir DIR",
		Short: "Create a CA in DIR (kept if one is there): DIR/ca.pem and DIR/ca-key.pem, root-only",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := pki.InitCA(dir); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "CA in %s\n", pki.CACertPath(dir))
			return nil
		},
	}
	issue := &cobra.Command{
		Use:   "issue NAME --dir DIR [--ip IP]...",
		Short: "Issue the certificate of identity NAME: a host's name (its agent), controller, or cli",
		Long: `Writes DIR/NAME.pem and DIR/NAME-key.pem (0600), signed by DIR's CA. NAME is the
identity servers check: an agent's certificate must be issued for its host's
name (--name of cflow agent serve), the switch controller's for "controller",
the operator's for "cli". --ip adds addresses the certificate is valid for.`,
		Example: `  cflow certs init --dir /etc/containerflow/pki
  cflow certs issue hostA --dir /etc/containerflow/pki --ip 198.19.0.11
  cflow certs issue controller --dir /etc/containerflow/pki --ip 198.19.0.1
  cflow certs issue cli --dir /etc/containerflow/pki`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, _, err := pki.Issue(dir, args[0], ips); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n%s\n", pki.CertPath(dir, args[0]), pki.KeyPath(dir, args[0]))
			return nil
		},
	}
	for _, c := range []*cobra.Command{init, issue} {
		c.Flags().StringVar(&dir, "dir", "", "PKI directory (required)")
		_ = c.MarkFlagRequired("dir")
	}
	issue.Flags().StringArrayVar(&ips, "ip", nil, "an address (IP or DNS name) the certificate is valid for (repeatable)")
	cmd.AddCommand(init, issue)
	return cmd
}
