package fleet

import (
	"time"

	"github.com/containerflow/containerflow/internal/agent"
)

// Host is a host as the fleet knows it: registered by its agent.
type Host struct {
	Name string `json:"name"`
	URL  string `json:"url"` // the agent's API
	// Unschedulable: nothing is placed or moved here (an evacuation, or
	// an operator's cordon) until `cflow host resume`.
	Unschedulable bool      `json:"unschedulable"`
	Registered    time.Time `json:"registered"`
	Seen          time.Time `json:"seen"` // last registration (agents repeat it)
}

// HostStatus is a host with what its agent reports now.
type HostStatus struct {
	Host
	Reachable  bool                  `json:"reachable"`
	Error      string                `json:"error,omitempty"`
	Stats      *agent.HostStats      `json:"stats,omitempty"`
	Containers []agent.ContainerInfo `json:"containers,omitempty"`
}

// Operation statuses. The seed's asynchronous tasks had NOT_READY,
// SUCCESS and FAILURE: pending and running are its NOT_READY, cancelled
// is a FAILURE the operator asked for.
const (
	StatusPending   = "pending"
	StatusRunning   = "running"
	StatusSuccess   = "success"
	StatusFailure   = "failure"
	StatusCancelled = "cancelled"
)

// Operation kinds.
const (
	KindMigrate   = "migrate"
	KindEvacuate  = "evacuate"
	KindRebalance = "rebalance"
	KindRun       = "run"
)

// Operation is a long action and what became of each of its steps.
type Operation struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	Target string `json:"target"` // the host evacuated, the container moved or run
	Status string `json:"status"`
	// Error says why an operation did not succeed (the steps say more).
	Error       string    `json:"error,omitempty"`
	Created     time.Time `json:"created"`
	Started     time.Time `json:"started,omitzero"`
	Ended       time.Time `json:"ended,omitzero"`
	Concurrency int       `json:"concurrency"`
	Done        int       `json:"done"`  // steps ended, whatever their result
	Total       int       `json:"total"` // steps
	// ImbalanceBefore/After: the planner's figures (max/mean of the hosts'
	// dominant shares) for evacuations and rebalances.
	ImbalanceBefore float64 `json:"imbalance_before,omitempty"`
	ImbalanceAfter  float64 `json:"imbalance_after,omitempty"`
	Steps           []Step  `json:"steps"`
}

// Ended says the operation will not change any more.
func (o *Operation) Finished() bool {
	return o.Status == StatusSuccess || o.Status == StatusFailure || o.Status == StatusCancelled
}

// Step is one container's move (or start).
type Step struct {
	Container string `json:"container"`
	From      string `json:"from,omitempty"`
	To        string `json:"to"`
	// Status: pending, running, success, failure (the container is still
	// where it was: a rolled-back migration, or one that was not possible),
	// cancelled (not started).
	Status string    `json:"status"`
	Error  string    `json:"error,omitempty"`
	Start  time.Time `json:"start,omitzero"`
	End    time.Time `json:"end,omitzero"`
	// From the migration's record.
	MigrationStatus string  `json:"migration_status,omitempty"`
	DowntimeMs      float64 `json:"downtime_ms,omitempty"` // time to ready
	TotalMs         float64 `json:"total_ms,omitempty"`
}
