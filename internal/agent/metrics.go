package agent

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/containerflow/containerflow/internal/migration"
)

// Prometheus metrics of one agent (GET /metrics; names and labels in
// docs/metrics.md). Each agent has a registry of its own rather than the
// library's global one: tests run many agents in one process, and a
// restarted agent must not find its predecessor's collectors registered.
// Every series carries host=NAME, so scrapes of several agents through one
// proxy or socket stay apart.

// Migration roles and the destination's results. The source's results
// are its records' statuses (migration.Status*).
const (
	roleSource      = "source"
	roleDestination = "destination"
)

type agentMetrics struct {
	reg        *prometheus.Registry
	migrations *prometheus.CounterVec   // role, result
	downtime   prometheus.Histogram     // source side, successes
	duration   *prometheus.HistogramVec // source side, by result
	refusals   *prometheus.CounterVec   // operation: run, migration
}

func newAgentMetrics(a *Agent) *agentMetrics {
	m := &agentMetrics{
		reg: prometheus.NewRegistry(),
		migrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cflow_agent_migrations_total",
			Help: "Migrations this host took part in, by role (source, destination) and result (success, rolled_back, failed).",
		}, []string{"role", "result"}),
		downtime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "cflow_agent_migration_downtime_seconds",
			Help:    "Downtime of successful migrations from this host: from the freeze to the container running on the destination (time_to_ready_ms of the record).",
			Buckets: []float64{0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10},
		}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cflow_agent_migration_duration_seconds",
			Help:    "Whole migrations from this host, preparation to cleanup (total_ms of the record), by result.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300},
		}, []string{"result"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cflow_agent_capacity_refusals_total",
			Help: "Containers refused because their requests exceeded the free capacity, by operation (run, migration: an incoming one).",
		}, []string{"operation"}),
	}
	// Every series exists from the start, at 0: a rate over a counter
	// that appears with its first increment misses that increment.
	for _, role := range []string{roleSource, roleDestination} {
		for _, res := range []string{migration.StatusSuccess, migration.StatusRolledBack, migration.StatusFailed} {
			m.migrations.WithLabelValues(role, res)
			if role == roleSource {
				m.duration.WithLabelValues(res)
			}
		}
	}
	m.refusals.WithLabelValues("run")
	m.refusals.WithLabelValues("migration")
	r := prometheus.WrapRegistererWith(prometheus.Labels{"host": a.cfg.Name}, m.reg)
	r.MustRegister(m.migrations, m.downtime, m.duration, m.refusals, stateCollector{a},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *agentMetrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// sourceDone counts a migration this host was the source of.
func (m *agentMetrics) sourceDone(rec *migration.Record) {
	m.migrations.WithLabelValues(roleSource, rec.Status).Inc()
	m.duration.WithLabelValues(rec.Status).Observe(rec.TotalMs / 1000)
	if rec.Status == migration.StatusSuccess {
		m.downtime.Observe(rec.TimeToReadyMs / 1000)
	}
}

// refused counts a capacity refusal of a container reserved in state.
func (m *agentMetrics) refused(state string) {
	op := "run"
	if state == StateIncoming {
		op = "migration"
	}
	m.refusals.WithLabelValues(op).Inc()
}

// incomingEnded counts the end of an incoming migration once: success
// (committed, every page there), rolled_back (aborted or expired: the
// container stays on its source) or failed (lost here after it went live:
// a post-copy whose pages stopped coming).
func (a *Agent) incomingEnded(e *entry, result string) {
	a.mu.Lock()
	done := e.counted
	e.counted = true
	a.mu.Unlock()
	if !done {
		a.metrics.migrations.WithLabelValues(roleDestination, result).Inc()
	}
}

// stateCollector reads the agent's state at each scrape: nothing to keep
// in step with the containers' comings and goings.
type stateCollector struct{ a *Agent }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descContainers  = desc("cflow_agent_containers", "Containers on this host by state (running, migrating, incoming, exited, ...).", "state")
	descCapCPU      = desc("cflow_agent_capacity_cpu_cores", "CPUs this host offers its containers' requests (--capacity-cpus; default the machine's).")
	descCapMem      = desc("cflow_agent_capacity_memory_bytes", "Memory this host offers its containers' requests (--capacity-memory; default the machine's).")
	descReqCPU      = desc("cflow_agent_requested_cpu_cores", "CPU requests of the containers holding capacity here, incoming ones included.")
	descReqMem      = desc("cflow_agent_requested_memory_bytes", "Memory requests of the containers holding capacity here, incoming ones included.")
	descUsedCPU     = desc("cflow_agent_cpu_usage_cores", "CPUs the running containers used over the last sampling interval, summed.")
	descUsedMem     = desc("cflow_agent_memory_working_set_bytes", "Working set of the running containers at the last sample, summed.")
	descCtrCPU      = desc("cflow_agent_container_cpu_usage_cores", "CPUs a container used over the last sampling interval.", "container")
	descCtrCPUTotal = desc("cflow_agent_container_cpu_usage_seconds_total", "CPU time a container used since its cgroup was made here (starts again after a restart or a migration).", "container")
	descCtrMem      = desc("cflow_agent_container_memory_working_set_bytes", "A container's memory working set (usage less inactive file cache) at the last sample.", "container")
	descCtrReqCPU   = desc("cflow_agent_container_requested_cpu_cores", "A container's CPU request (its --cpus; 0 if none).", "container")
	descCtrReqMem   = desc("cflow_agent_container_requested_memory_bytes", "A container's memory request (its --memory; 0 if none).", "container")
)

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descContainers, descCapCPU, descCapMem, descReqCPU, descReqMem, descUsedCPU, descUsedMem,
		descCtrCPU, descCtrCPUTotal, descCtrMem, descCtrReqCPU, descCtrReqMem} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	states := map[string]int{StateRunning: 0, StateMigrating: 0, StateIncoming: 0, StateExited: 0}
	for _, info := range a.List() {
		states[info.State]++
		if holdsCapacity(info) {
			gauge(descCtrReqCPU, info.Requests.CPUs, info.Name)
			gauge(descCtrReqMem, float64(info.Requests.MemoryBytes), info.Name)
		}
	}
	for st, n := range states {
		gauge(descContainers, float64(n), st)
	}
	capy, req := a.cfg.Capacity, a.requested()
	gauge(descCapCPU, capy.CPUs)
	gauge(descCapMem, float64(capy.MemoryBytes))
	gauge(descReqCPU, req.CPUs)
	gauge(descReqMem, float64(req.MemoryBytes))
	used, _ := a.used()
	gauge(descUsedCPU, used.CPUs)
	gauge(descUsedMem, float64(used.MemoryBytes))
	last, _ := a.usage.snapshot()
	for name, s := range last {
		ch <- prometheus.MustNewConstMetric(descCtrCPUTotal, prometheus.CounterValue, s.cpuTime.Seconds(), name)
		gauge(descCtrMem, float64(s.memory), name)
		if s.rated {
			gauge(descCtrCPU, s.cpus, name)
		}
	}
}
