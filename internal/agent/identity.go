package agent

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"

	"github.com/containerflow/containerflow/internal/pki"
)

// ErrForbidden: the caller's certificate is valid but names an identity
// that may not do this (a host acting for another, a peer doing a user's
// operation). Mapped to 403.
var ErrForbidden = errors.New("forbidden")

// Who may call what (docs/security.md). Only connections over the TLS
// listener carry an identity, the peer certificate's name, and only they
// are checked here: the unix socket is guarded by its file mode (root
// only), and a plain TCP listener exists only when the agent was started
// with --insecure, where the bearer token is all there is.

// caller is the verified identity of a request's peer, or "" when the
// request did not come over TLS.
func caller(r *http.Request) string { return pki.PeerName(r.TLS) }

func (a *Agent) isOperator(name string) bool {
	ops := a.cfg.Operators
	if ops == nil {
		// The controller runs the fleet's operations (package fleet).
		ops = []string{pki.CLI, pki.Controller}
	}
	return slices.Contains(ops, name)
}

func (a *Agent) isPeer(name string) bool {
	_, ok := a.cfg.Peers[name]
	return ok && name != a.cfg.Name
}

func forbidden(who, what string) error {
	return fmt.Errorf("%w: %s may not %s", ErrForbidden, who, what)
}

// allowUser admits the operator's (CLI) calls.
func (a *Agent) allowUser(r *http.Request) error {
	who := caller(r)
	if r.TLS == nil || a.isOperator(who) {
		return nil
	}
	return forbidden(who, "do a user's operation ("+r.Method+" "+r.URL.Path+")")
}

// allowPeerHost admits only host's agent.
func (a *Agent) allowPeerHost(r *http.Request, host, what string) error {
	who := caller(r)
	if r.TLS == nil || (who == host && a.isPeer(who)) {
		return nil
	}
	return forbidden(who, what+" (only "+host+" may)")
}

// user wraps a handler for user operations.
func (a *Agent) user(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := a.allowUser(r); err != nil {
			writeErr(w, err)
			return
		}
		h(w, r)
	}
}

// fromSource wraps the destination-side endpoints of an incoming
// migration: only its source may push its images, settle, commit or abort
// it.
func (a *Agent) fromSource(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			name := r.PathValue("name")
			e, err := a.incomingEntry(name)
			if err != nil {
				writeErr(w, err)
				return
			}
			if err := a.allowPeerHost(r, e.incoming.from, "act on the incoming migration of "+name); err != nil {
				writeErr(w, err)
				return
			}
		}
		h(w, r)
	}
}

// settleFrom is fromSource for the settle, which comes after the commit
// has ended the incoming state: the host the container arrived from.
func (a *Agent) settleFrom(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			name := r.PathValue("name")
			a.mu.Lock()
			from := ""
			if e, ok := a.containers[name]; ok {
				from = e.from
				if e.incoming != nil {
					from = e.incoming.from
				}
			}
			a.mu.Unlock()
			if from == "" {
				writeErr(w, fmt.Errorf("%w: container %s on %s (lost with its post-copy?)", ErrNotFound, name, a.cfg.Name))
				return
			}
			if err := a.allowPeerHost(r, from, "settle the migration of "+name); err != nil {
				writeErr(w, err)
				return
			}
		}
		h(w, r)
	}
}

// isUnix says the request came over the unix socket (whose peers have no
// host:port).
func isUnix(r *http.Request) bool {
	_, _, err := net.SplitHostPort(r.RemoteAddr)
	return err != nil
}

// toDestination wraps the source-side endpoints a destination calls (the
// handoff, the log handover): only the host the container is moving (or
// moved) to.
func (a *Agent) toDestination(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			name := r.PathValue("name")
			a.mu.Lock()
			to := a.movingTo[name]
			a.mu.Unlock()
			if to == "" {
				writeErr(w, fmt.Errorf("%w: no migration of %s from %s", ErrConflict, name, a.cfg.Name))
				return
			}
			if err := a.allowPeerHost(r, to, "act on the outgoing migration of "+name); err != nil {
				writeErr(w, err)
				return
			}
		}
		h(w, r)
	}
}

// setMovingTo records (to != "") or forgets the destination of a
// container leaving.
func (a *Agent) setMovingTo(name, to string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.movingTo == nil {
		a.movingTo = map[string]string{}
	}
	if to == "" {
		delete(a.movingTo, name)
	} else {
		a.movingTo[name] = to
	}
}
