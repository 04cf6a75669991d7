package fleet

import (
	"context"
	"fmt"
	"slices"

	"github.com/containerflow/containerflow/internal/agent"
	"github.com/containerflow/containerflow/internal/controller"
	"github.com/containerflow/containerflow/internal/placement"
)

// snapshot is the planner's input read from the agents now: every
// reachable host with its capacity, every running container with its
// requests. Unreachable hosts are left out (their containers are unknown
// and nothing can be moved to them).
type snapshot struct {
	hosts       []placement.Host
	containers  []placement.Container
	unreachable []string
}

func (m *Manager) snapshot(ctx context.Context) snapshot {
	var s snapshot
	for _, hs := range m.Hosts(ctx) {
		if !hs.Reachable {
			s.unreachable = append(s.unreachable, hs.Name)
			continue
		}
		cpus, mem := capacityOf(*hs.Stats)
		s.hosts = append(s.hosts, placement.Host{Name: hs.Name, CPUs: cpus, MemoryBytes: mem, Unschedulable: hs.Unschedulable})
		for _, c := range hs.Containers {
			if c.State != agent.StateRunning {
				continue
			}
			s.containers = append(s.containers, placement.Container{Name: c.Name, Host: hs.Name,
				CPUs: c.Requests.CPUs, MemoryBytes: c.Requests.MemoryBytes})
		}
	}
	return s
}

// capacityOf is what a host offers to containers' requests (its agent's
// --capacity-cpus/--capacity-memory, the machine's by default).
func capacityOf(st agent.HostStats) (cpus float64, mem int64) {
	return st.Capacity.CPUs, st.Capacity.MemoryBytes
}

// Evacuate starts moving every container off host, which becomes
// unschedulable until resumed. Containers no other host can take stay
// and their steps say why; no host to go to at all is an error.
func (m *Manager) Evacuate(ctx context.Context, host string, concurrency int) (Operation, error) {
	if _, err := m.client(host); err != nil {
		return Operation{}, err
	}
	if op := m.running(KindEvacuate, host); op != nil {
		return Operation{}, fmt.Errorf("%w: %s is being evacuated already (operation %s)", controller.ErrConflict, host, op.ID)
	}
	s := m.snapshot(ctx)
	if slices.Contains(s.unreachable, host) {
		return Operation{}, fmt.Errorf("%w: %s does not answer: which containers it runs is unknown", controller.ErrConflict, host)
	}
	p, err := placement.Evacuate(s.hosts, s.containers, host)
	if err != nil && len(p.Moves) == 0 {
		return Operation{}, fmt.Errorf("%w: %v", controller.ErrConflict, err)
	}
	if _, err := m.SetSchedulable(host, false); err != nil {
		return Operation{}, err
	}
	return m.begin(Operation{Kind: KindEvacuate, Target: host, Concurrency: concurrency, Steps: stepsOf(p, host),
		ImbalanceBefore: p.ImbalanceBefore, ImbalanceAfter: p.ImbalanceAfter}, nil)
}

// RebalanceRequest is POST /v1/rebalance.
type RebalanceRequest struct {
	Threshold   float64 `json:"threshold,omitempty"` // max/mean (default placement's, 1.1)
	MaxMoves    int     `json:"max_moves,omitempty"` // 0: as many as needed
	DryRun      bool    `json:"dry_run,omitempty"`
	Concurrency int     `json:"concurrency,omitempty"`
}

// RebalancePlan is what a dry run answers.
type RebalancePlan struct {
	Steps           []Step   `json:"steps"`
	ImbalanceBefore float64  `json:"imbalance_before"`
	ImbalanceAfter  float64  `json:"imbalance_after"`
	Reached         bool     `json:"reached"`
	Unreachable     []string `json:"unreachable_hosts,omitempty"`
}

// Rebalance plans the fewest moves that bring every host under the
// threshold and, unless a dry run, starts them.
func (m *Manager) Rebalance(ctx context.Context, req RebalanceRequest) (*RebalancePlan, *Operation, error) {
	if req.Threshold != 0 && req.Threshold < 1 {
		return nil, nil, fmt.Errorf("%w: threshold %g: max/mean is at least 1", controller.ErrInvalid, req.Threshold)
	}
	if req.MaxMoves < 0 {
		return nil, nil, fmt.Errorf("%w: max_moves %d", controller.ErrInvalid, req.MaxMoves)
	}
	if op := m.running(KindRebalance, "fleet"); op != nil {
		return nil, nil, fmt.Errorf("%w: a rebalance is running (operation %s)", controller.ErrConflict, op.ID)
	}
	s := m.snapshot(ctx)
	p, err := placement.Rebalance(s.hosts, s.containers, placement.Options{Threshold: req.Threshold, MaxMoves: req.MaxMoves})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: rebalance: %v", controller.ErrConflict, err)
	}
	plan := &RebalancePlan{Steps: stepsOf(p, ""), ImbalanceBefore: p.ImbalanceBefore, ImbalanceAfter: p.ImbalanceAfter,
		Reached: p.Reached, Unreachable: s.unreachable}
	if req.DryRun {
		return plan, nil, nil
	}
	op, err := m.begin(Operation{Kind: KindRebalance, Target: "fleet", Concurrency: req.Concurrency, Steps: plan.Steps,
		ImbalanceBefore: p.ImbalanceBefore, ImbalanceAfter: p.ImbalanceAfter}, nil)
	if err != nil {
		return nil, nil, err
	}
	return plan, &op, nil
}

// Place chooses a host for a new container.
func (m *Manager) Place(ctx context.Context, c placement.Container) (string, error) {
	s := m.snapshot(ctx)
	h, err := placement.Place(s.hosts, s.containers, c)
	if err != nil {
		return "", fmt.Errorf("%w: place %s: %v", controller.ErrConflict, c.Name, err)
	}
	return h, nil
}

// Migrate starts moving one container to a host.
func (m *Manager) Migrate(ctx context.Context, name, to string) (Operation, error) {
	if _, err := m.client(to); err != nil {
		return Operation{}, err
	}
	if !m.schedulable(to) {
		return Operation{}, fmt.Errorf("%w: %s is unschedulable", controller.ErrConflict, to)
	}
	from := m.where(ctx, name)
	switch from {
	case "":
		return Operation{}, fmt.Errorf("%w: no host runs a container %q", controller.ErrNotFound, name)
	case to:
		return Operation{}, fmt.Errorf("%w: %s already runs on %s", controller.ErrInvalid, name, to)
	}
	return m.begin(Operation{Kind: KindMigrate, Target: name, Concurrency: 1,
		Steps: []Step{{Container: name, From: from, To: to, Status: StatusPending}}}, nil)
}

// Run starts a container on host, or where the planner places it.
func (m *Manager) Run(ctx context.Context, spec agent.ContainerSpec, host string) (Operation, error) {
	if host == "" {
		var err error
		c := placement.Container{Name: spec.Name, CPUs: spec.Resources.CPUs, MemoryBytes: spec.Resources.MemoryBytes}
		if host, err = m.Place(ctx, c); err != nil {
			return Operation{}, err
		}
	} else if _, err := m.client(host); err != nil {
		return Operation{}, err
	}
	return m.begin(Operation{Kind: KindRun, Target: spec.Name, Concurrency: 1,
		Steps: []Step{{Container: spec.Name, To: host, Status: StatusPending}}}, &spec)
}

// stepsOf turns a plan into steps: its moves, and a failed step for each
// container the planner could not place (it stays on from).
func stepsOf(p placement.Plan, from string) []Step {
	steps := make([]Step, 0, len(p.Moves)+len(p.Unplaced))
	for _, mv := range p.Moves {
		steps = append(steps, Step{Container: mv.Container, From: mv.From, To: mv.To, Status: StatusPending})
	}
	for _, u := range p.Unplaced {
		steps = append(steps, Step{Container: u.Container, From: from, Status: StatusFailure, Error: "stays: " + u.Reason})
	}
	return steps
}
