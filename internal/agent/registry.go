package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/containerflow/containerflow/internal/controller"
)

// Registry is the fleet-wide namespace of container names and addresses
// (the switch controller's, see controller/registry.go). An agent whose
// Steerer is also a Registry — the controller's Steerer is — reserves every
// container's name and address there before creating anything, so no two
// hosts run the same name or address; an agent without one (tests running
// agents alone, the bridge switch) checks its own host only.
type Registry interface {
	Reserve(ctx context.Context, req controller.NameRequest) (controller.NameRecord, error)
	Claim(ctx context.Context, req controller.NameRequest) (controller.NameRecord, error)
	Release(ctx context.Context, name, host string) error
}

// registryTimeout bounds one call to the registry.
const registryTimeout = 5 * time.Second

func (a *Agent) registry() Registry {
	r, _ := a.cfg.Steerer.(Registry)
	return r
}

// kindError carries the registry's own message (`name "web" is in use on
// hostA`) under one of the agent's sentinels, which picks the HTTP status.
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

func registryError(err error) error {
	var api *controller.APIError
	if !errors.As(err, &api) {
		return fmt.Errorf("name registry: %w", err)
	}
	switch api.Status {
	case http.StatusConflict, http.StatusInsufficientStorage:
		return &kindError{kind: ErrConflict, msg: api.Msg}
	case http.StatusBadRequest:
		return &kindError{kind: ErrBadRequest, msg: api.Msg}
	case http.StatusNotFound:
		return &kindError{kind: ErrNotFound, msg: api.Msg}
	}
	return fmt.Errorf("name registry: %w", err)
}

// admit checks a container to run here and reserves it: fleet-wide in the
// registry (which allocates the address when s has none), then on this
// host. It returns the local entry and what undoes the fleet-wide
// reservation should the start fail.
func (a *Agent) admit(ctx context.Context, s *ContainerSpec) (*entry, func(), error) {
	if _, _, err := restartLimit(s.Restart); err != nil {
		return nil, nil, err
	}
	reg := a.registry()
	if reg == nil {
		if !s.IP.IsValid() {
			return nil, nil, fmt.Errorf("%w: ip: missing (addresses are allocated only by a switch controller's name registry)", ErrBadRequest)
		}
		if err := a.validate(s); err != nil {
			return nil, nil, err
		}
		e, err := a.reserve(*s, StateRunning)
		return e, func() {}, err
	}
	// One admission at a time on this host: a name the registry says this
	// host holds but no container here has is then stale (an agent that
	// died between reserving and creating), not another start's.
	a.admitMu.Lock()
	defer a.admitMu.Unlock()
	probe := *s
	if !probe.IP.IsValid() {
		probe.IP = netip.MustParseAddr("192.0.2.1") // stands for the address to come
	}
	if err := a.validate(&probe); err != nil {
		return nil, nil, err
	}
	a.mu.Lock()
	if e, ok := a.containers[s.Name]; ok {
		a.mu.Unlock()
		return nil, nil, fmt.Errorf("%w: container %s already exists on %s (%s)", ErrConflict, s.Name, a.cfg.Name, e.info.State)
	}
	// Before the registry, so a host too full does not reserve a name and
	// an address only to give them back (reserve checks again, under the
	// lock that makes it exact).
	if err := a.fitsLocked(*s); err != nil {
		a.mu.Unlock()
		a.metrics.refused(StateRunning)
		return nil, nil, err
	}
	a.mu.Unlock()
	req := controller.NameRequest{Name: s.Name, Host: a.cfg.Name}
	if s.IP.IsValid() {
		req.IP = s.IP.String()
	}
	if s.MAC != nil {
		req.MAC = s.MAC.String()
	}
	rctx, cancel := context.WithTimeout(ctx, registryTimeout)
	rec, err := reg.Reserve(rctx, req)
	cancel()
	if err != nil {
		return nil, nil, registryError(err)
	}
	undo := func() { _ = a.forget(context.Background(), s.Name) }
	ip, err := netip.ParseAddr(rec.IP)
	if err != nil {
		undo()
		return nil, nil, fmt.Errorf("name registry: address %q: %w", rec.IP, err)
	}
	s.IP = ip
	if s.MAC == nil {
		if hw, err := net.ParseMAC(rec.MAC); err == nil {
			s.MAC = MAC(hw)
		}
	}
	if err := a.validate(s); err != nil {
		undo()
		return nil, nil, err
	}
	e, err := a.reserve(*s, StateRunning)
	if err != nil {
		undo()
		return nil, nil, err
	}
	return e, undo, nil
}

// forget releases a container's name and address in the registry, which
// also removes the address's switch entry. A name already gone is no
// error.
func (a *Agent) forget(ctx context.Context, name string) error {
	reg := a.registry()
	if reg == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, registryTimeout)
	defer cancel()
	err := reg.Release(ctx, name, a.cfg.Name)
	if err == nil || errors.Is(err, controller.ErrNotFound) {
		return nil
	}
	a.log.Warn("could not release the name in the registry", "name", name, "err", err)
	return fmt.Errorf("container %s removed, but its name and address stay reserved: %w", name, registryError(err))
}

// registerMove records a migrated container's new host. It runs once the
// migration has committed and its record is complete — not in the frozen
// window, nor in the record's times — but before the migrate call answers,
// so a client's next request (`migrate && rm`) finds the registry right.
// A failure is only logged: the new host re-asserts its containers when
// its agent restarts.
func (a *Agent) registerMove(spec ContainerSpec, to string) {
	reg := a.registry()
	if reg == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
	defer cancel()
	req := controller.NameRequest{Name: spec.Name, Host: to, IP: spec.IP.String(), MAC: spec.MAC.String()}
	if _, err := reg.Claim(ctx, req); err != nil {
		a.log.Warn("could not record the migration in the name registry", "name", spec.Name, "to", to, "err", err)
	}
}

// claimAdopted re-asserts, in the background, that this host runs the
// containers a restart adopted (a move recorded by a source that died
// before telling the registry is set right here).
func (a *Agent) claimAdopted(specs []ContainerSpec) {
	reg := a.registry()
	if reg == nil || len(specs) == 0 {
		return
	}
	go func() {
		for _, s := range specs {
			ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
			req := controller.NameRequest{Name: s.Name, Host: a.cfg.Name, IP: s.IP.String(), MAC: s.MAC.String()}
			if _, err := reg.Claim(ctx, req); err != nil {
				a.log.Warn("adopted container not claimed in the name registry", "name", s.Name, "err", err)
			}
			cancel()
		}
	}()
}
