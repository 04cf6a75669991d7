package agent

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/runtime"
	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/testprog"
)

// spinner holds 48 MiB of touched pages and spins one CPU.
const spinner = `
buf = bytearray(48 << 20)
for p in range(0, len(buf), 4096):
    buf[p] = 1
while True:
    pass
`

const sleeper = `
import time
while True:
    time.sleep(1)
`

// A CPU-bound container shows its use in the API and in /metrics; an
// idle one shows little. Bounds are loose: other tests share the 2 cores.
func TestUsageOfABusyContainer(t *testing.T) {
	e := newEnv(t, func(_ string, c *Config) { c.UsageInterval = 300 * time.Millisecond })
	ctx := context.Background()
	c := e.clients[testbed.HostA]
	// Its 1-CPU limit keeps it from starving the machine's other tests.
	e.runOn(testbed.HostA, ContainerSpec{Name: "busy", IP: netip.MustParseAddr("198.18.0.30"), Args: testprog.Args(spinner),
		Resources: runtime.Resources{CPUs: 1}})
	e.runOn(testbed.HostA, ContainerSpec{Name: "idle", IP: netip.MustParseAddr("198.18.0.31"), Args: testprog.Args(sleeper)})

	var busy ContainerInfo
	var maxCPUs float64
	for deadline := time.Now().Add(60 * time.Second); ; {
		info, err := c.Get(ctx, "busy")
		if err != nil {
			t.Fatal(err)
		}
		if u := info.Usage; u != nil {
			maxCPUs = max(maxCPUs, u.CPUs)
			if u.CPUs > 0.5 && u.MemoryBytes > 48<<20 {
				busy = info
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("busy never showed > 0.5 CPUs and > 48 MiB: last %+v, at most %.2f CPUs", info.Usage, maxCPUs)
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("busy: %.2f CPUs, %d MiB", busy.Usage.CPUs, busy.Usage.MemoryBytes>>20)
	if busy.Requests != (Amount{CPUs: 1}) {
		t.Errorf("requests %+v", busy.Requests)
	}
	// The CFS quota allows 1 CPU per period; an interval's rate can only
	// exceed it by the sampling's own jitter.
	if busy.Usage.CPUs > 1.3 {
		t.Errorf("busy used %.2f CPUs under a 1-CPU limit", busy.Usage.CPUs)
	}

	// The list shows the same, once idle has two samples of its own.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		list, err := c.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var idle *Amount
		for _, info := range list {
			if info.Name == "idle" {
				idle = info.Usage
			}
		}
		if idle != nil {
			if idle.CPUs > 0.5 || idle.MemoryBytes <= 0 {
				t.Errorf("idle container's usage: %+v", idle)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no usage for the idle container")
		}
	}
	st, err := c.Host(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Used.MemoryBytes <= 48<<20 || st.Used.CPUs <= 0 || st.UsageAt.IsZero() || st.Requested != (Amount{CPUs: 1}) {
		t.Errorf("host: used %+v at %v, requested %+v", st.Used, st.UsageAt, st.Requested)
	}

	fams, err := c.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	busyL := map[string]string{"container": "busy"}
	if v, _ := familyValue(t, fams, testbed.HostA, "cflow_agent_container_cpu_usage_seconds_total", busyL); v < 0.15 {
		t.Errorf("busy's CPU seconds: %v", v)
	}
	if v, _ := familyValue(t, fams, testbed.HostA, "cflow_agent_container_memory_working_set_bytes", busyL); v <= 48<<20 {
		t.Errorf("busy's working set: %v", v)
	}
	if v, ok := familyValue(t, fams, testbed.HostA, "cflow_agent_container_cpu_usage_cores", busyL); !ok || v < 0 {
		t.Errorf("busy's CPU gauge: %v (present %v)", v, ok)
	}
	if v, _ := familyValue(t, fams, testbed.HostA, "cflow_agent_memory_working_set_bytes", nil); v <= 48<<20 {
		t.Errorf("host working set: %v", v)
	}
}
