package switchbench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/nsrun"
	"github.com/containerflow/containerflow/internal/testbed"
)

// The bench runs end to end and writes sane JSON. Figures are not
// asserted: timing depends on the machine.
func TestBenchRunsAndWritesJSON(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to build testbeds (namespaces, BPF); CI runs as root")
	}
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	prefix := "sb" + hex.EncodeToString(b)
	t.Cleanup(func() {
		for _, p := range []string{prefix + "e", prefix + "b"} {
			_ = testbed.Down(p)
			if left, _ := nsrun.List(p + "-"); len(left) > 0 {
				t.Errorf("namespaces left: %v", left)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Run(ctx, Options{Prefix: prefix, Moves: 100, Rounds: 1, RoundDuration: 200 * time.Millisecond, Flows: 400})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "switch.json")
	if err := res.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"update_latency_us", "forward_pps", "lb_imbalance"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %s", k)
		}
	}
	u := res.UpdateLatencyUS
	if u.Count != 100 || u.P50 <= 0 || u.P99 < u.P50 || u.Max < u.P99 {
		t.Errorf("update latency %+v", u)
	}
	f := res.ForwardPPS
	if f.EBPF <= 0 || f.Bridge <= 0 || len(f.Rounds["ebpf"]) != 1 || f.Ratio <= 0 {
		t.Errorf("forwarding %+v", f)
	}
	if res.LB.Flows != 400 || res.LBImbalance < 1 || len(res.LB.Members) != 4 {
		t.Errorf("lb %+v", res.LB)
	}
	if len(res.Floors) != 2 {
		t.Errorf("floors %+v", res.Floors)
	}
	for _, p := range []string{prefix + "e", prefix + "b"} {
		if left, _ := nsrun.List(p + "-"); len(left) > 0 {
			t.Errorf("bench left namespaces %v", left)
		}
	}
	t.Logf("update p50 %.0f µs p99 %.0f µs; ebpf %.0f/s bridge %.0f/s; imbalance %.3f", u.P50, u.P99, f.EBPF, f.Bridge, res.LBImbalance)
}
