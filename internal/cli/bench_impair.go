package cli

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/containerflow/containerflow/internal/testbed"
)

// impairFigures is what `cflow bench impair` measures: each figure is the
// impairment asked for next to what real packets between the client and
// hostA saw.
type impairFigures struct {
	Mechanism    string  `json:"mechanism"`
	BaseRTTMs    float64 `json:"base_rtt_ms"`
	Delay20RTTMs float64 `json:"delay_20ms_added_rtt_median_ms"` // want 40
	Delay20P95Ms float64 `json:"delay_20ms_added_rtt_p95_ms"`
	Loss5Percent float64 `json:"loss_5pct_measured_pct"` // over 10000 datagrams
	SameSeedSame bool    `json:"loss_same_seed_same_drops"`
	Rate10Mbit   float64 `json:"rate_10mbit_measured_mbit"` // frame bits
	// 64-byte datagrams offered as fast as the sender manages (up to
	// 200k/s) through a 1ms delay: the relay's packet-rate ceiling.
	OfferedPPS   float64 `json:"small_offered_pps"`
	DeliveredPPS float64 `json:"small_delivered_pps"`
}

func newBenchImpairCmd() *cobra.Command {
	var (
		prefix, jsonPath, mechanism string
	)
	cmd := &cobra.Command{
		Use:   "impair",
		Short: "Measure link impairment (delay, loss, seed, rate, packet rate) with real packets on a testbed of its own",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			log := cmd.ErrOrStderr()
			tb, err := testbed.Up(testbed.Config{Prefix: prefix})
			if err != nil {
				return err
			}
			defer func() {
				if derr := testbed.Down(prefix); derr != nil && err == nil {
					err = derr
				}
			}()
			if err := tb.PinNeighbours(testbed.Client, testbed.HostA); err != nil {
				return err
			}
			ms := func(d time.Duration) float64 { return math.Round(float64(d.Microseconds())) / 1000 }
			impair := func(im testbed.Impairment) error { return tb.ImpairWith(testbed.Client, im, mechanism) }
			var f impairFigures
			base, err := tb.MeasureRTT(testbed.Client, testbed.HostA, 50, 5*time.Millisecond)
			if err != nil {
				return err
			}
			f.BaseRTTMs = ms(testbed.Percentile(base, 50))

			fmt.Fprintln(log, "delay 20ms each way, 200 probes")
			if err := impair(testbed.Impairment{Delay: 20 * time.Millisecond}); err != nil {
				return err
			}
			rtts, err := tb.MeasureRTT(testbed.Client, testbed.HostA, 200, 10*time.Millisecond)
			if err != nil {
				return err
			}
			f.Delay20RTTMs = ms(testbed.Percentile(rtts, 50) - testbed.Percentile(base, 50))
			f.Delay20P95Ms = ms(testbed.Percentile(rtts, 95) - testbed.Percentile(base, 50))

			fmt.Fprintln(log, "loss 5%, seed 42, twice 10000 datagrams")
			var drops [2][]int
			for i := range drops {
				if err := impair(testbed.Impairment{Loss: 5, Seed: 42}); err != nil {
					return err
				}
				got, err := tb.MeasureLoss(testbed.Client, testbed.HostA, 10000, 64, 5000)
				if err != nil {
					return err
				}
				for j, ok := range got {
					if !ok {
						drops[i] = append(drops[i], j)
					}
				}
			}
			f.Loss5Percent = float64(len(drops[0])) / 100
			f.SameSeedSame = fmt.Sprint(drops[0]) == fmt.Sprint(drops[1])

			fmt.Fprintln(log, "rate 10mbit, 15Mbit/s offered for 3s")
			if err := impair(testbed.Impairment{Rate: 10e6}); err != nil {
				return err
			}
			r, err := tb.MeasureRate(testbed.Client, testbed.HostA, 15e6, 3*time.Second)
			if err != nil {
				return err
			}
			f.Rate10Mbit = math.Round(r.FrameBits/1e3) / 1e3

			fmt.Fprintln(log, "delay 1ms, 200k datagrams/s of 64 bytes offered for 2s")
			if err := impair(testbed.Impairment{Delay: time.Millisecond}); err != nil {
				return err
			}
			start := time.Now()
			got, err := tb.MeasureLoss(testbed.Client, testbed.HostA, 400000, 64, 200000)
			if err != nil {
				return err
			}
			secs := time.Since(start).Seconds() - 1 // MeasureLoss waits 1s for stragglers
			n := 0
			for _, ok := range got {
				if ok {
					n++
				}
			}
			f.OfferedPPS = math.Round(float64(len(got)) / secs)
			f.DeliveredPPS = math.Round(float64(n) / secs)
			ims, _ := tb.Impairments()
			if len(ims) > 0 {
				f.Mechanism = ims[0].Mechanism
			}
			b, _ := json.MarshalIndent(f, "", "  ")
			fmt.Fprintln(cmd.OutOrStdout(), string(b))
			if jsonPath != "" {
				return os.WriteFile(jsonPath, append(b, '\n'), 0o644)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&prefix, "bench-prefix", "cfib", "prefix of the bench testbed")
	cmd.Flags().StringVar(&jsonPath, "json", "", "write the figures as JSON to this file")
	cmd.Flags().StringVar(&mechanism, "mechanism", testbed.MechanismAuto, "auto, netem or relay")
	return cmd
}
