package cli

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/containerflow/containerflow/internal/agent"
	"github.com/containerflow/containerflow/internal/controller"
	"github.com/containerflow/containerflow/internal/pki"
	"github.com/containerflow/containerflow/internal/testbed"
)

// runIP parses `container run --ip`: empty leaves the choice to the
// switch controller's name registry, which allocates a free address of the
// data network.
func runIP(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return ip, fmt.Errorf("--ip %q: not an IP address", s)
	}
	if err := testbed.ValidateContainerIP(ip); err != nil {
		return ip, fmt.Errorf("--ip: %w", err)
	}
	return ip, nil
}

// lsState is the STATE column: an exited container with how it ended.
func lsState(c agent.ContainerInfo) string {
	state := c.State
	if c.PagesPending {
		state += " (pages pending)" // post-copy: still depends on its previous host
	}
	if c.Exit != nil {
		state += " (" + c.Exit.String() + ")"
	}
	if c.Restarts > 0 {
		state += fmt.Sprintf(", %d restarts", c.Restarts)
	}
	return state
}

// lsPid is the PID column: none for a container that does not run.
func lsPid(c agent.ContainerInfo) string {
	if c.Pid == 0 || c.State == agent.StateExited {
		return "-"
	}
	return strconv.Itoa(c.Pid)
}

// releaseStale frees the reservation of a name no host runs (its agent
// lost it, or died between reserving and creating it), with its switch
// entry. It says what it did, or returns the lookup's error.
func releaseStale(ctx context.Context, g *globals, name string, notFound error) (string, error) {
	tb, err := testbed.Open(g.prefix)
	if err != nil || tb.Switch != testbed.SwitchEBPF {
		return "", notFound
	}
	ctl := tb.ControllerClient()
	if g.tls && tb.TLS {
		id, err := tb.Identity(pki.CLI)
		if err != nil {
			return "", err
		}
		if ctl, err = tb.ControllerTLSClient(id); err != nil {
			return "", err
		}
	}
	rec, err := ctl.Release(ctx, name, "")
	if errors.Is(err, controller.ErrNotFound) {
		return "", notFound
	}
	if err != nil {
		return "", fmt.Errorf("%w; releasing its reservation: %w", notFound, err)
	}
	return fmt.Sprintf("%s ran on no host; its reservation on %s (%s) was released", name, rec.Host, rec.IP), nil
}
