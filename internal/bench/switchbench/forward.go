package switchbench

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/containerflow/containerflow/internal/testbed"
)

// ForwardPPS is the forwarding rate through each switch kind.
type ForwardPPS struct {
	EBPF   float64 `json:"ebpf"`   // median over rounds, frames/s
	Bridge float64 `json:"bridge"` // median over rounds, frames/s
	Ratio  float64 `json:"ratio"`  // ebpf / bridge
	// Rounds holds every round's rate, in the order they ran.
	Rounds map[string][]float64 `json:"rounds"`
	// Socket holds the medians counted by the receiving application
	// (datagrams read), beside the interface counts above.
	Socket       map[string]float64 `json:"socket"`
	FrameBytes   int                `json:"frame_bytes"`
	RoundSeconds float64            `json:"round_seconds"`
	Method       string             `json:"method"`
}

// measureForwarding runs rounds alternately on each testbed: one thread on
// hostA floods hostB with small UDP datagrams; the rate is the number of
// frames hostB's uplink received (kernel counter read in hostB) per
// second. The median per switch is reported.
func measureForwarding(ctx context.Context, tbs map[string]*testbed.Testbed, o Options, logf func(string, ...any)) (ForwardPPS, error) {
	out := ForwardPPS{Rounds: map[string][]float64{}, Socket: map[string]float64{},
		FrameBytes: 14 + 20 + 8 + o.Payload, RoundSeconds: o.RoundDuration.Seconds(),
		Method: "one sender thread on hostA (sendmmsg, 64 datagrams per call) to a UDP socket on hostB (recvmmsg); rate = frames received by hostB's eth0 per second; rounds alternate between the switches"}
	hostB, _ := testbed.Spec(testbed.HostB)
	dst := netip.AddrPortFrom(hostB.DataIP, 9999)
	sock := map[string][]float64{}
	kinds := []string{testbed.SwitchEBPF, testbed.SwitchBridge}

	round := func(kind string, d time.Duration) (float64, float64, error) {
		tb := tbs[kind]
		r, err := startReceiver(tb, testbed.HostB, dst)
		if err != nil {
			return 0, 0, err
		}
		before, err := rxPackets(tb, testbed.HostB)
		if err != nil {
			r.stop()
			return 0, 0, err
		}
		start := time.Now()
		if _, err := sendFlood(tb, testbed.HostA, dst, o.Payload, start.Add(d)); err != nil {
			r.stop()
			return 0, 0, err
		}
		elapsed := time.Since(start).Seconds()
		read := r.stop()
		after, err := rxPackets(tb, testbed.HostB)
		if err != nil {
			return 0, 0, err
		}
		return float64(after-before) / elapsed, float64(read) / elapsed, nil
	}
	// Warm-up: ARP, caches, CPU frequency.
	for _, k := range kinds {
		if _, _, err := round(k, 300*time.Millisecond); err != nil {
			return out, fmt.Errorf("warm-up %s: %w", k, err)
		}
	}
	for i := 0; i < o.Rounds; i++ {
		order := kinds
		if i%2 == 1 {
			order = []string{kinds[1], kinds[0]}
		}
		for _, k := range order {
			if err := ctx.Err(); err != nil {
				return out, err
			}
			pps, spps, err := round(k, o.RoundDuration)
			if err != nil {
				return out, fmt.Errorf("round %d %s: %w", i+1, k, err)
			}
			out.Rounds[k] = append(out.Rounds[k], pps)
			sock[k] = append(sock[k], spps)
			logf("  round %d %-6s %10.0f frames/s (socket %10.0f)", i+1, k, pps, spps)
		}
	}
	out.EBPF, out.Bridge = median(out.Rounds[testbed.SwitchEBPF]), median(out.Rounds[testbed.SwitchBridge])
	for _, k := range kinds {
		out.Socket[k] = median(sock[k])
	}
	if out.Bridge > 0 {
		out.Ratio = out.EBPF / out.Bridge
	}
	return out, nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
