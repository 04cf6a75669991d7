package controller

import (
	"context"
	"net/http"
	"net/netip"
	"slices"

	"github.com/containerflow/containerflow/internal/pki"
)

// Who may write what (docs/security.md). Only requests over TLS carry an
// identity (the client certificate's name) and are checked here: the unix
// socket is guarded by its file mode, and plain TCP is served only with
// --insecure (and then only the seed's endpoints next to a TLS listener).
// Operators (the CLI) may do everything; any other identity is an agent,
// named after its host, which may
//   - reserve, claim and release names for its own host, and hand a name it
//     holds to another host (a migration's source recording the move);
//   - steer (batch of move_address only) an address to its own port, if the
//     address is registered, or an address its host holds anywhere (the
//     source of a migration steering to the destination, or back).
// Everything else is refused with 403 before anything changes.

type ctxKey int

const identityKey ctxKey = 0

// agentWrites are the routes an agent may call; their handlers check the
// host the request names (checkAgentHost and friends).
var agentWrites = map[string]bool{
	"POST /v1/names":          true,
	"PUT /v1/names/{name}":    true,
	"DELETE /v1/names/{name}": true,
	"POST /v1/batch":          true,
}

func (c *Controller) isOperator(name string) bool {
	ops := c.operators
	if ops == nil {
		ops = []string{pki.CLI}
	}
	return slices.Contains(ops, name)
}

// agentIdentity is the host name an agent's request acts as, "" for
// requests not subject to the agents' rules (operators, the unix socket,
// plain HTTP).
func agentIdentity(r *http.Request) string {
	s, _ := r.Context().Value(identityKey).(string)
	return s
}

// admit checks a write's caller before its handler runs, and passes an
// agent's identity on to the handlers that check the host it names.
func (c *Controller) admit(r *http.Request) (*http.Request, error) {
	if r.TLS == nil {
		return r, nil
	}
	who := pki.PeerName(r.TLS)
	if c.isOperator(who) {
		return r, nil
	}
	if who == pki.Controller || !c.agentMayWrite(r.Pattern) {
		return r, errField(ErrForbidden, "", "%s may not %s %s", who, r.Method, r.URL.Path)
	}
	return r.WithContext(context.WithValue(r.Context(), identityKey, who)), nil
}

// checkAgentHost refuses an agent naming another host than its own.
func checkAgentHost(r *http.Request, host string) error {
	who := agentIdentity(r)
	if who == "" || host == who {
		return nil
	}
	return errField(ErrForbidden, "host", "%s may not act for host %q", who, host)
}

// checkClaim lets an agent claim a name for itself, or hand one it holds
// to another host.
func (c *Controller) checkClaim(r *http.Request, req NameRequest) error {
	who := agentIdentity(r)
	if who == "" || req.Host == who {
		return nil
	}
	c.names.mu.Lock()
	old, ok := c.names.byName[req.Name]
	c.names.mu.Unlock()
	if ok && old.Host == who {
		return nil
	}
	return errField(ErrForbidden, "host", "%s may not record %q on %s", who, req.Name, req.Host)
}

// checkSteer lets an agent move addresses the registry knows to its own
// port, and addresses its host holds to any port.
func (c *Controller) checkSteer(r *http.Request, ops []Op) error {
	who := agentIdentity(r)
	if who == "" {
		return nil
	}
	for i, op := range ops {
		if op.Op != "move_address" {
			return errField(ErrForbidden, "ops", "%s may only move addresses, not %s (ops[%d])", who, op.Op, i)
		}
		ip, err := netip.ParseAddr(op.IP)
		if err != nil {
			return errField(ErrInvalid, "ops", "ops[%d].ip %q", i, op.IP)
		}
		to := string(op.Port)
		if n, err := c.ports.resolve("port", op.Port); err == nil {
			to = c.ports.name(n)
		}
		c.names.mu.Lock()
		name, ok := c.names.byIP[ip]
		rec := c.names.byName[name]
		c.names.mu.Unlock()
		switch {
		case ok && rec.Host == who:
		case ok && to == who:
		default:
			return errField(ErrForbidden, "ops", "%s may not steer %s to %s (ops[%d])", who, op.IP, to, i)
		}
	}
	return nil
}
