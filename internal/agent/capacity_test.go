package agent

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/containerflow/containerflow/internal/migration"
	"github.com/containerflow/containerflow/internal/runtime"
)

// bareAgent is an agent with containers in its registry and nothing
// behind them: enough for admission arithmetic and the metrics' shape.
func bareAgent(capacity Amount, held ...ContainerInfo) *Agent {
	a := &Agent{cfg: Config{Name: "hostB", Capacity: capacity}, containers: map[string]*entry{}, usage: &usageSampler{}}
	a.metrics = newAgentMetrics(a)
	for _, info := range held {
		a.containers[info.Name] = &entry{info: info}
	}
	return a
}

func held(name, state string, cpus float64, mem int64) ContainerInfo {
	return ContainerInfo{ContainerSpec: ContainerSpec{Name: name, Resources: runtime.Resources{CPUs: cpus, MemoryBytes: mem}}, State: state}
}

func spec(name string, cpus float64, mem int64) ContainerSpec {
	return ContainerSpec{Name: name, Resources: runtime.Resources{CPUs: cpus, MemoryBytes: mem}}
}

func TestAdmissionSumsRequests(t *testing.T) {
	restarting := held("crashed", StateExited, 0.25, 64<<20)
	restarting.Restart, restarting.Exit = "on-failure", &ExitInfo{Known: true, Code: 1}
	a := bareAgent(Amount{CPUs: 1, MemoryBytes: 1 << 30},
		held("a", StateRunning, 0.1, 100<<20),
		held("b", StateIncoming, 0.2, 200<<20),  // a migration on its way in holds its room
		held("done", StateExited, 0.5, 512<<20), // exited for good: holds nothing
		restarting,                              // about to start again: holds its room
	)
	a.mu.Lock()
	defer a.mu.Unlock()
	// 0.1 + 0.2 + 0.25 + 0.45 is exactly 1 in thousandths, not in floats.
	if err := a.fitsLocked(spec("fits", 0.45, 0)); err != nil {
		t.Errorf("exact fit refused: %v", err)
	}
	err := a.fitsLocked(spec("big", 0.46, 64<<20))
	var ce *CapacityError
	if !errors.As(err, &ce) || !errors.Is(err, ErrConflict) {
		t.Fatalf("over capacity: %v", err)
	}
	if ce.Free.CPUs != 0.45 || ce.Free.MemoryBytes != (1<<30)-(364<<20) || ce.Request.CPUs != 0.46 {
		t.Errorf("refusal %+v", ce)
	}
	want := "insufficient capacity: hostB has 0.45 CPUs and 660 MiB free (capacity 1 CPUs and 1 GiB), container big requests 0.46 CPUs and 64 MiB"
	if err.Error() != want {
		t.Errorf("message\n%s\nwant\n%s", err, want)
	}
	if err := a.fitsLocked(spec("mem", 0, 661<<20)); err == nil {
		t.Error("memory over what is free accepted")
	}
	// No requests: fits even where nothing is free.
	a.cfg.Capacity = Amount{CPUs: 0.1, MemoryBytes: 1 << 20}
	if err := a.fitsLocked(spec("none", 0, 0)); err != nil {
		t.Errorf("a container without requests refused on a full host: %v", err)
	}
}

// The refusal crosses the API whole: status, reason, and what was free,
// and the client finds it with errors.As.
func TestCapacityRefusalOverTheAPI(t *testing.T) {
	a := bareAgent(Amount{CPUs: 1, MemoryBytes: 1 << 30}, held("a", StateRunning, 0.75, 0))
	a.mu.Lock()
	err := a.fitsLocked(spec("big", 0.5, 0))
	a.mu.Unlock()
	rec := httptest.NewRecorder()
	writeErr(rec, err)
	if rec.Code != http.StatusConflict {
		t.Fatalf("status %d", rec.Code)
	}
	got := decodeResp(rec.Result(), nil)
	var ae *APIError
	var ce *CapacityError
	if !errors.As(got, &ae) || ae.Reason != ReasonCapacity || !errors.As(got, &ce) || ce.Free.CPUs != 0.25 || ce.Host != "hostB" {
		t.Fatalf("client error %#v", got)
	}
	if capacityRefusal(got) == nil {
		t.Error("not recognised as a capacity refusal")
	}
	if capacityRefusal(&APIError{Status: 409, Msg: "conflict: container x already exists"}) != nil {
		t.Error("a name conflict taken for a capacity refusal")
	}
}

// /metrics of an agent with no containers parses, and holds the families
// docs/metrics.md lists, with the host label.
func TestMetricsFamilies(t *testing.T) {
	a := bareAgent(Amount{CPUs: 1.5, MemoryBytes: 2 << 30}, held("web", StateRunning, 0.5, 256<<20))
	a.metrics.refused(StateIncoming)
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	value := func(name string, labels map[string]string) (float64, bool) {
		return familyValue(t, fams, "hostB", name, labels)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"cflow_agent_capacity_cpu_cores", nil, 1.5},
		{"cflow_agent_capacity_memory_bytes", nil, 2 << 30},
		{"cflow_agent_requested_cpu_cores", nil, 0.5},
		{"cflow_agent_requested_memory_bytes", nil, 256 << 20},
		{"cflow_agent_containers", map[string]string{"state": "running"}, 1},
		{"cflow_agent_containers", map[string]string{"state": "incoming"}, 0},
		{"cflow_agent_container_requested_cpu_cores", map[string]string{"container": "web"}, 0.5},
		{"cflow_agent_capacity_refusals_total", map[string]string{"operation": "migration"}, 1},
		{"cflow_agent_capacity_refusals_total", map[string]string{"operation": "run"}, 0},
		{"cflow_agent_migrations_total", map[string]string{"role": "destination", "result": "rolled_back"}, 0},
		{"cflow_agent_migration_downtime_seconds", nil, 0},
		{"cflow_agent_migration_duration_seconds", map[string]string{"result": "success"}, 0},
	} {
		if got, ok := value(c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("content type %q", ct)
	}
}

// familyValue returns the value of the first series of a family whose
// labels include labels (a histogram's sample count), checking that every
// series carries host.
func familyValue(t *testing.T, fams map[string]*dto.MetricFamily, host, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	f := fams[name]
	if f == nil {
		return 0, false
	}
metrics:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		if have["host"] != host {
			t.Errorf("%s without host=%s: %v", name, host, have)
		}
		for k, v := range labels {
			if have[k] != v {
				continue metrics
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// waitMigrations waits until an agent's cflow_agent_migrations_total
// shows want for each result of role: a destination counts a post-copy's
// success at its last page, in the background.
func waitMigrations(t *testing.T, c *Client, host, role string, want map[string]float64) {
	t.Helper()
	var got map[string]float64
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		fams, err := c.Metrics(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		got = map[string]float64{}
		for _, res := range []string{migration.StatusSuccess, migration.StatusRolledBack, migration.StatusFailed} {
			got[res], _ = familyValue(t, fams, host, "cflow_agent_migrations_total", map[string]string{"role": role, "result": res})
		}
		if maps.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s as %s: migrations %v, want %v", host, role, got, want)
			return
		}
	}
}
