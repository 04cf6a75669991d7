package switchbench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"text/tabwriter"
)

// Floors of the issue.
const (
	floorUpdateP99US = 1000.0
)

func floors(r *Result) []FloorCheck {
	return []FloorCheck{
		{Name: "update_latency_us.p99 <= 1000", Passed: r.UpdateLatencyUS.P99 <= floorUpdateP99US,
			Detail: fmt.Sprintf("p99 %.0f µs (%s)", r.UpdateLatencyUS.P99, r.UpdateLatencyUS.Endpoint)},
		{Name: "forward_pps.ebpf >= forward_pps.bridge", Passed: r.ForwardPPS.EBPF >= r.ForwardPPS.Bridge,
			Detail: fmt.Sprintf("%.0f vs %.0f frames/s (x%.2f)", r.ForwardPPS.EBPF, r.ForwardPPS.Bridge, r.ForwardPPS.Ratio)},
	}
}

// Print writes the figures as a table.
func (r *Result) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "METRIC\tVALUE\tDETAIL\n")
	for _, l := range []Latency{r.UpdateLatencyUS, r.UpdateLatencyV1} {
		fmt.Fprintf(tw, "update latency (µs)\tp50 %.0f  p99 %.0f\tp90 %.0f  p99.9 %.0f  max %.0f  mean %.0f  n=%d  %s\n",
			l.P50, l.P99, l.P90, l.P999, l.Max, l.Mean, l.Count, l.Endpoint)
	}
	f := r.ForwardPPS
	fmt.Fprintf(tw, "forwarding, eBPF switch\t%.0f frames/s\tmedian of %d rounds %v, socket %.0f/s, %d-byte frames\n",
		f.EBPF, len(f.Rounds["ebpf"]), round0(f.Rounds["ebpf"]), f.Socket["ebpf"], f.FrameBytes)
	fmt.Fprintf(tw, "forwarding, Linux bridge\t%.0f frames/s\tmedian of %d rounds %v, socket %.0f/s\n",
		f.Bridge, len(f.Rounds["bridge"]), round0(f.Rounds["bridge"]), f.Socket["bridge"])
	fmt.Fprintf(tw, "forwarding ratio eBPF/bridge\tx%.2f\t\n", f.Ratio)
	fmt.Fprintf(tw, "LB imbalance (max/mean, 4 members)\t%.3f\t%d flows:", r.LBImbalance, r.LB.Flows)
	for _, m := range sortedMembers(r.LB.Members) {
		fmt.Fprintf(tw, " %s=%d", m, r.LB.Members[m])
	}
	fmt.Fprintln(tw)
	for _, c := range r.Floors {
		st := "PASS"
		if !c.Passed {
			st = "FAIL"
		}
		fmt.Fprintf(tw, "floor: %s\t%s\t%s\n", c.Name, st, c.Detail)
	}
	tw.Flush()
}

func round0(v []float64) []int64 {
	out := make([]int64, len(v))
	for i, x := range v {
		out[i] = int64(math.Round(x))
	}
	return out
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
