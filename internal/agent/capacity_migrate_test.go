package agent

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/containerflow/containerflow/internal/migration"
	"github.com/containerflow/containerflow/internal/runtime"
	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/testprog"
)

func counterSpec(name, ip string, cpus float64, mem int64) ContainerSpec {
	return ContainerSpec{Name: name, IP: netip.MustParseAddr(ip), Args: testprog.Args(testprog.Counter),
		Resources: runtime.Resources{CPUs: cpus, MemoryBytes: mem}}
}

// capacityRefused checks err is the 409 of a container that did not fit,
// naming the host and what it had free.
func capacityRefused(t *testing.T, err error, host, container string, freeCPUs float64) {
	t.Helper()
	var ae *APIError
	var ce *CapacityError
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict || ae.Reason != ReasonCapacity || !errors.As(err, &ce) {
		t.Fatalf("want a 409 capacity refusal, got %v", err)
	}
	if ce.Host != host || ce.Container != container || ce.Free.CPUs != freeCPUs || !strings.Contains(ae.Msg, "insufficient capacity: "+host) {
		t.Errorf("refusal %+v: %s", ce, ae.Msg)
	}
}

// A host refuses what does not fit in its capacity: a run, and an
// incoming migration, whose source keeps serving without having frozen.
// Once room is made, the same migration goes through and is counted.
func TestCapacityRefusesRunAndIncomingMigration(t *testing.T) {
	e := newEnv(t, func(h string, c *Config) {
		if h == testbed.HostB {
			c.Capacity = Amount{CPUs: 1, MemoryBytes: 512 << 20}
		}
	})
	ctx := context.Background()
	a, b := e.clients[testbed.HostA], e.clients[testbed.HostB]

	e.runOn(testbed.HostB, counterSpec("half", "198.18.0.20", 0.5, 128<<20))
	_, err := b.Run(ctx, counterSpec("big", "198.18.0.21", 0.75, 0))
	capacityRefused(t, err, testbed.HostB, "big", 0.5)
	_, err = b.Run(ctx, counterSpec("fat", "198.18.0.21", 0, 400<<20))
	capacityRefused(t, err, testbed.HostB, "fat", 0.5)
	if nets, _ := e.tb.ContainerNets(testbed.HostB); len(nets) != 1 {
		t.Errorf("refused runs left namespaces on hostB: %v", nets)
	}
	// No requests: counts as 0, fits.
	e.runOn(testbed.HostB, counterSpec("norequest", "198.18.0.22", 0, 0))
	st, err := b.Host(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Capacity != (Amount{1, 512 << 20}) || st.Requested != (Amount{0.5, 128 << 20}) || st.Free != (Amount{0.5, 384 << 20}) || st.Containers != 2 {
		t.Errorf("hostB: capacity %+v requested %+v free %+v, %d containers", st.Capacity, st.Requested, st.Free, st.Containers)
	}

	e.runOn(testbed.HostA, counterSpec("mover", "198.18.0.23", 0.75, 64<<20))
	lc := newLineConn(t, e.dial("198.18.0.23:7000"))
	lc.say("a", "1:a")
	before, err := a.Get(ctx, "mover")
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.Migrate(ctx, "mover", MigrateRequest{To: testbed.HostB})
	capacityRefused(t, err, testbed.HostB, "mover", 0.5)
	if res == nil || res.Record.Status != migration.StatusRolledBack || res.Record.CheckpointStartNs != 0 || res.Record.FreezeMs != 0 {
		t.Fatalf("refused migration's record: %+v", res)
	}
	after, err := a.Get(ctx, "mover")
	if err != nil || after.State != StateRunning || after.Pid != before.Pid {
		t.Errorf("source after the refusal: %+v, %v (pid before %d)", after, err, before.Pid)
	}
	lc.say("b", "2:b")
	if _, err := b.Get(ctx, "mover"); err == nil {
		t.Error("hostB holds the refused container")
	}
	mb, err := b.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for op, want := range map[string]float64{"run": 2, "migration": 1} {
		if v, _ := familyValue(t, mb, testbed.HostB, "cflow_agent_capacity_refusals_total", map[string]string{"operation": op}); v != want {
			t.Errorf("hostB refusals of %s: %v, want %v", op, v, want)
		}
	}

	// Room made: the same migration goes through, and both sides count it.
	if err := b.Remove(ctx, "half"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Migrate(ctx, "mover", MigrateRequest{To: testbed.HostB}); err != nil {
		t.Fatalf("migration once there is room: %v", err)
	}
	lc.say("c", "3:c")
	if st, err := b.Host(ctx); err != nil || st.Requested != (Amount{0.75, 64 << 20}) {
		t.Errorf("hostB after the move: requested %+v, %v", st.Requested, err)
	}
	if st, err := a.Host(ctx); err != nil || st.Requested != (Amount{}) {
		t.Errorf("hostA after the move: requested %+v, %v", st.Requested, err)
	}
	ma, err := a.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mb, err = b.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		host, name string
		labels     map[string]string
		fams       map[string]*dto.MetricFamily
		want       float64
	}{
		{testbed.HostA, "cflow_agent_migrations_total", map[string]string{"role": "source", "result": "rolled_back"}, ma, 1},
		{testbed.HostA, "cflow_agent_migrations_total", map[string]string{"role": "source", "result": "success"}, ma, 1},
		{testbed.HostA, "cflow_agent_migration_downtime_seconds", nil, ma, 1},
		{testbed.HostA, "cflow_agent_migration_duration_seconds", map[string]string{"result": "success"}, ma, 1},
		{testbed.HostA, "cflow_agent_migration_duration_seconds", map[string]string{"result": "rolled_back"}, ma, 1},
		{testbed.HostB, "cflow_agent_migrations_total", map[string]string{"role": "destination", "result": "success"}, mb, 1},
		{testbed.HostB, "cflow_agent_migrations_total", map[string]string{"role": "destination", "result": "rolled_back"}, mb, 0},
		{testbed.HostB, "cflow_agent_containers", map[string]string{"state": "running"}, mb, 2},
		{testbed.HostB, "cflow_agent_requested_cpu_cores", nil, mb, 0.75},
	} {
		if v, ok := familyValue(t, c.fams, c.host, c.name, c.labels); !ok || v != c.want {
			t.Errorf("%s %s%v = %v (present %v), want %v", c.host, c.name, c.labels, v, ok, c.want)
		}
	}
	if h := ma["cflow_agent_migration_downtime_seconds"].GetMetric()[0].GetHistogram(); h.GetSampleSum() <= 0 {
		t.Errorf("downtime sum %v", h.GetSampleSum())
	}
}
