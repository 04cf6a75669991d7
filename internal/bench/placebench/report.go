package placebench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
)

// Print writes the table.
func (r *Result) Print(w io.Writer) {
	fmt.Fprintf(w, "%d containers on %d hosts (seed %d, requests %.0f%% of capacity), median of %d runs per phase\n",
		r.Containers, r.Hosts, r.Seed, r.Fill*100, r.Repeat)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "PHASE\tTIME (ms)\tVIOLATIONS\tIMBALANCE\tMOVES\tUNPLACED\tREACHED\tDETAIL\n")
	for _, p := range r.Phases {
		reached := "yes"
		if !p.Reached {
			reached = "no"
		}
		if p.Minimal {
			reached += " (minimal)"
		}
		det := p.Detail
		if !p.Deterministic {
			det += "; NOT DETERMINISTIC"
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%d\t%.3f -> %.3f\t%d\t%d\t%s\t%s\n",
			p.Name, p.Ms, p.Violations, p.ImbalanceBefore, p.ImbalanceAfter, p.Moves, p.Unplaced, reached, det)
	}
	tw.Flush()
}

// WriteJSON writes the result to path.
func (r *Result) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
