package cli

import (
	"encoding/json"

	"github.com/spf13/cobra"

	"github.com/containerflow/containerflow/internal/doctor"
)

func newDoctorCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check that this machine can run containerflow (kernel features, CRIU, runc, privileges)",
		Long: `doctor probes every kernel feature and tool containerflow needs, for real,
inside a throwaway network namespace, and prints one line per check with a fix
for each failure. It exits non-zero when a required check fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rs := doctor.Run(cmd.Context())
			ok := true
			for _, r := range rs {
				if !r.OK && r.Required {
					ok = false
				}
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(rs); err != nil {
					return err
				}
			} else {
				doctor.Print(cmd.OutOrStdout(), rs)
			}
			if !ok {
				return errSilentf(cmd, "doctor: required checks failed")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print results as JSON")
	return cmd
}

func errSilentf(cmd *cobra.Command, msg string) error {
	cmd.PrintErrln(msg)
	return errSilent
}
