package controller

import "net/http"

// Route is an endpoint served beside the controller's own, through the
// same checks (token, TLS identities, body limits, errors, metrics): how
// another package — the fleet's hosts and operations — adds to the API
// without the controller knowing it.
type Route struct {
	Pattern string // as http.ServeMux takes it, e.g. "POST /v1/operations"
	// Write needs the token; over TLS its caller must be an operator, or
	// an agent when AgentWrite is set (acting for its own host: the
	// handler checks the host it names with AgentIdentity).
	Write      bool
	AgentWrite bool
	Handle     func(r *http.Request) (int, any, error)
}

// Mount adds routes; call it before Handler.
func (c *Controller) Mount(routes ...Route) {
	c.routesMu.Lock()
	defer c.routesMu.Unlock()
	c.routes = append(c.routes, routes...)
}

func (c *Controller) mountRoutes(mux *http.ServeMux) {
	c.routesMu.Lock()
	defer c.routesMu.Unlock()
	for _, rt := range c.routes {
		if rt.Write {
			mux.Handle(rt.Pattern, c.write(rt.Handle))
		} else {
			mux.Handle(rt.Pattern, c.read(rt.Handle))
		}
	}
}

// agentMayWrite says whether an agent may call the write with this
// pattern (for itself).
func (c *Controller) agentMayWrite(pattern string) bool {
	if agentWrites[pattern] {
		return true
	}
	c.routesMu.Lock()
	defer c.routesMu.Unlock()
	for _, rt := range c.routes {
		if rt.Pattern == pattern && rt.AgentWrite {
			return true
		}
	}
	return false
}

// AgentIdentity is the host an agent's request acts as ("" for operators,
// the unix socket and plain HTTP, which are not limited to one host).
func AgentIdentity(r *http.Request) string { return agentIdentity(r) }

// DecodeJSON reads a strict JSON body (unknown fields refused) with the
// controller's errors, for mounted routes.
func DecodeJSON(r *http.Request, v any) error { return decode(r, v, true) }
