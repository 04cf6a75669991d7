package fleet

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/containerflow/containerflow/internal/agent"
	"github.com/containerflow/containerflow/internal/controller"
	"github.com/containerflow/containerflow/internal/placement"
)

// Routes is the fleet's API, served by the controller (controller.Mount).
// Every route needs the token (and, over TLS, an operator), reads too:
// they show containers' specs, environment included. Agents may only
// register themselves.
func (m *Manager) Routes() []controller.Route {
	r := func(pattern string, h func(*http.Request) (int, any, error)) controller.Route {
		return controller.Route{Pattern: pattern, Write: true, Handle: h}
	}
	return []controller.Route{
		{Pattern: "PUT /v1/hosts/{name}", Write: true, AgentWrite: true, Handle: m.putHost},
		r("GET /v1/hosts", func(req *http.Request) (int, any, error) { return 200, m.Hosts(req.Context()), nil }),
		r("GET /v1/hosts/{name}", m.getHost),
		r("POST /v1/hosts/{name}/evacuate", m.postEvacuate),
		r("POST /v1/hosts/{name}/cordon", m.schedulableRoute(false)),
		r("POST /v1/hosts/{name}/resume", m.schedulableRoute(true)),
		r("GET /v1/operations", func(*http.Request) (int, any, error) { return 200, m.Operations(), nil }),
		r("GET /v1/operations/{id}", m.getOperation),
		r("POST /v1/operations/{id}/cancel", func(req *http.Request) (int, any, error) {
			op, err := m.Cancel(req.PathValue("id"))
			return 200, op, err
		}),
		r("POST /v1/migrations", m.postMigration),
		r("POST /v1/rebalance", m.postRebalance),
		r("POST /v1/placements", m.postPlacement),
		r("POST /v1/containers", m.postContainer),
		r("GET /v1/status", m.getStatus),
	}
}

// RegisterRequest is PUT /v1/hosts/{name}, sent by the host's agent.
type RegisterRequest struct {
	URL string `json:"url"`
}

func (m *Manager) putHost(r *http.Request) (int, any, error) {
	name := r.PathValue("name")
	if who := controller.AgentIdentity(r); who != "" && who != name {
		return 0, nil, fmt.Errorf("%w: %s may not register host %q", controller.ErrForbidden, who, name)
	}
	var req RegisterRequest
	if err := controller.DecodeJSON(r, &req); err != nil {
		return 0, nil, err
	}
	h, err := m.Register(name, req.URL)
	return 200, h, err
}

func (m *Manager) getHost(r *http.Request) (int, any, error) {
	name := r.PathValue("name")
	for _, hs := range m.Hosts(r.Context()) {
		if hs.Name == name {
			return 200, hs, nil
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return 0, nil, m.unknownHost(name)
}

func (m *Manager) schedulableRoute(on bool) func(*http.Request) (int, any, error) {
	return func(r *http.Request) (int, any, error) {
		h, err := m.SetSchedulable(r.PathValue("name"), on)
		return 200, h, err
	}
}

// EvacuateRequest is POST /v1/hosts/{name}/evacuate.
type EvacuateRequest struct {
	Concurrency int `json:"concurrency,omitempty"`
}

// decodeOptional reads a JSON body that may be empty.
func decodeOptional(r *http.Request, v any) error {
	if r.ContentLength == 0 {
		return nil
	}
	return controller.DecodeJSON(r, v)
}

func (m *Manager) postEvacuate(r *http.Request) (int, any, error) {
	var req EvacuateRequest
	if err := decodeOptional(r, &req); err != nil {
		return 0, nil, err
	}
	op, err := m.Evacuate(r.Context(), r.PathValue("name"), req.Concurrency)
	return http.StatusAccepted, op, err
}

// maxWait bounds GET /v1/operations/{id}?wait=D.
const maxWait = time.Minute

func (m *Manager) getOperation(r *http.Request) (int, any, error) {
	id := r.PathValue("id")
	if w := r.URL.Query().Get("wait"); w != "" {
		d, err := time.ParseDuration(w)
		if err != nil || d < 0 {
			return 0, nil, fmt.Errorf("%w: wait=%q: want a duration such as 30s", controller.ErrInvalid, w)
		}
		ctx, cancel := context.WithTimeout(r.Context(), min(d, maxWait))
		defer cancel()
		op, err := m.Wait(ctx, id)
		return 200, op, err
	}
	op, err := m.Operation(id)
	return 200, op, err
}

// MigrationRequest is POST /v1/migrations.
type MigrationRequest struct {
	Container string `json:"container"`
	To        string `json:"to"`
}

func (m *Manager) postMigration(r *http.Request) (int, any, error) {
	var req MigrationRequest
	if err := controller.DecodeJSON(r, &req); err != nil {
		return 0, nil, err
	}
	if req.Container == "" || req.To == "" {
		return 0, nil, fmt.Errorf("%w: container and to are required", controller.ErrInvalid)
	}
	op, err := m.Migrate(r.Context(), req.Container, req.To)
	return http.StatusAccepted, op, err
}

// RebalanceAnswer is what POST /v1/rebalance answers: the plan, and the
// operation running it unless a dry run.
type RebalanceAnswer struct {
	Plan      *RebalancePlan `json:"plan"`
	Operation *Operation     `json:"operation,omitempty"`
}

func (m *Manager) postRebalance(r *http.Request) (int, any, error) {
	var req RebalanceRequest
	if err := decodeOptional(r, &req); err != nil {
		return 0, nil, err
	}
	plan, op, err := m.Rebalance(r.Context(), req)
	code := http.StatusAccepted
	if req.DryRun {
		code = http.StatusOK
	}
	return code, RebalanceAnswer{Plan: plan, Operation: op}, err
}

// PlacementRequest is POST /v1/placements: where would a container with
// these requests go.
type PlacementRequest struct {
	Name        string  `json:"name,omitempty"`
	CPUs        float64 `json:"cpus,omitempty"`
	MemoryBytes int64   `json:"memory_bytes,omitempty"`
}

func (m *Manager) postPlacement(r *http.Request) (int, any, error) {
	var req PlacementRequest
	if err := controller.DecodeJSON(r, &req); err != nil {
		return 0, nil, err
	}
	if req.CPUs < 0 || req.MemoryBytes < 0 {
		return 0, nil, fmt.Errorf("%w: negative request", controller.ErrInvalid)
	}
	h, err := m.Place(r.Context(), placement.Container{Name: req.Name, CPUs: req.CPUs, MemoryBytes: req.MemoryBytes})
	return 200, map[string]string{"host": h}, err
}

// RunRequest is POST /v1/containers: run a container on Host, or where
// the planner places it when Host is empty.
type RunRequest struct {
	Spec agent.ContainerSpec `json:"spec"`
	Host string              `json:"host,omitempty"`
}

func (m *Manager) postContainer(r *http.Request) (int, any, error) {
	var req RunRequest
	if err := controller.DecodeJSON(r, &req); err != nil {
		return 0, nil, err
	}
	if req.Spec.Name == "" {
		return 0, nil, fmt.Errorf("%w: spec.name is required", controller.ErrInvalid)
	}
	op, err := m.Run(r.Context(), req.Spec, req.Host)
	return http.StatusAccepted, op, err
}

// Status is GET /v1/status: the whole fleet at a glance.
type Status struct {
	Hosts      []HostStatus `json:"hosts"`
	Operations []Operation  `json:"operations"` // unfinished, and the last ten
}

func (m *Manager) getStatus(r *http.Request) (int, any, error) {
	st := Status{Hosts: m.Hosts(r.Context())}
	for i, op := range m.Operations() {
		if !op.Finished() || i < 10 {
			st.Operations = append(st.Operations, op)
		}
	}
	return 200, st, nil
}
