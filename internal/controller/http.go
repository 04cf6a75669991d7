package controller

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/containerflow/containerflow/internal/httpserve"
)

// maxBody bounds request bodies; a batch filling the whole address table
// (4096 operations) fits with room to spare.
const maxBody = 8 << 20

// handlerFunc is an API handler: it returns the status and body of a
// success, or an error mapped by StatusOf.
type handlerFunc func(r *http.Request) (int, any, error)

// Handler returns the HTTP API: the seed's endpoints, /v1 and /metrics.
func (c *Controller) Handler() http.Handler {
	mux := http.NewServeMux()
	// The seed's endpoints (api_seed.go).
	mux.Handle("POST /updateForward", c.write(c.seedUpdateForward))
	mux.Handle("POST /migrateNode", c.write(c.seedMigrateNode))
	mux.Handle("POST /addForward", c.write(c.seedAddForward))
	mux.Handle("POST /deleteClientSnat", c.write(c.seedDeleteClientSnat))
	mux.Handle("POST /cleanup", c.write(c.seedCleanup))
	mux.Handle("POST /reinitialize", c.write(c.seedReinitialize))

	// Reads (api_read.go).
	mux.Handle("GET /v1/health", c.read(c.getHealth))
	mux.Handle("GET /v1/ports", c.read(c.getPorts))
	mux.Handle("GET /v1/addresses", c.read(c.getAddresses))
	mux.Handle("GET /v1/addresses/{ip}", c.read(c.getAddress))
	mux.Handle("GET /v1/forward", c.read(c.getForward))
	mux.Handle("GET /v1/arp", c.read(c.getARP))
	mux.Handle("GET /v1/services", c.read(c.getServices))
	mux.Handle("GET /v1/services/{proto}/{vip}/{port}", c.read(c.getService))
	mux.Handle("GET /v1/conntrack", c.read(c.getConntrack))
	mux.Handle("GET /v1/counters", c.read(c.getCounters))
	mux.Handle("GET /v1/flood", c.read(c.getFlood))
	mux.Handle("GET /v1/state", c.read(c.getState))
	mux.Handle("GET /metrics", http.HandlerFunc(c.serveMetrics))

	// Writes (api_write.go).
	mux.Handle("PUT /v1/addresses/{ip}", c.write(c.putAddress))
	mux.Handle("DELETE /v1/addresses/{ip}", c.write(c.deleteAddress))
	mux.Handle("POST /v1/addresses/{ip}/move", c.write(c.moveAddress))
	mux.Handle("PUT /v1/services/{proto}/{vip}/{port}", c.write(c.putService))
	mux.Handle("DELETE /v1/services/{proto}/{vip}/{port}", c.write(c.deleteService))
	mux.Handle("PUT /v1/services/{proto}/{vip}/{port}/members/{addr}", c.write(c.putMember))
	mux.Handle("DELETE /v1/services/{proto}/{vip}/{port}/members/{addr}", c.write(c.deleteMember))
	mux.Handle("POST /v1/members/readdress", c.write(c.readdressMember))
	mux.Handle("DELETE /v1/conntrack", c.write(c.deleteConntrack))
	mux.Handle("PUT /v1/flood", c.write(c.putFlood))
	mux.Handle("POST /v1/batch", c.write(c.postBatch))

	// Container names and addresses (registry.go).
	c.nameRoutes(mux)
	c.mountRoutes(mux) // routes.go

	mux.Handle("/", c.read(func(r *http.Request) (int, any, error) {
		return 0, nil, errField(ErrNotFound, "path", "no endpoint %s %s", r.Method, r.URL.Path)
	}))
	return mux
}

// SeedHandler is what the plain-HTTP listener of a controller that
// otherwise speaks TLS serves with --insecure: the seed's endpoints (its
// scripts speak plain HTTP) and the health check, nothing of /v1's writes.
func (c *Controller) SeedHandler() http.Handler {
	full := c.Handler()
	seed := map[string]bool{"/updateForward": true, "/migrateNode": true, "/addForward": true,
		"/deleteClientSnat": true, "/cleanup": true, "/reinitialize": true, "/v1/health": true}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !seed[r.URL.Path] {
			writeJSON(w, http.StatusForbidden, ErrorBody{Error: "this plain-HTTP listener (--insecure) serves only the seed's endpoints; use the TLS listener"})
			return
		}
		full.ServeHTTP(w, r)
	})
}

func (c *Controller) read(h handlerFunc) http.Handler { return c.serve(h, false) }

func (c *Controller) write(h handlerFunc) http.Handler { return c.serve(h, true) }

func (c *Controller) serve(h handlerFunc, write bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		var (
			code int
			body any
			err  error
		)
		if write {
			err = c.authorize(r)
			if err == nil {
				r, err = c.admit(r)
			}
		}
		if err == nil {
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
			// The size is bounded, the time a client takes to send it
			// must be too (servers from httpserve have no ReadTimeout).
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(httpserve.JSONReadTimeout))
			code, body, err = h(r)
		}
		if err != nil {
			code = StatusOf(err)
			if code == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="cflow-switch"`)
			}
			if code >= 500 {
				c.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			} else {
				c.log.Debug("request refused", "method", r.Method, "path", r.URL.Path, "status", code, "err", err)
			}
			body = ErrorBody{Error: err.Error(), Field: Field(err)}
		}
		writeJSON(w, code, body)
		c.metrics.observe(r.Pattern, code, write, time.Since(start))
	})
}

// authorize checks the bearer token of a write.
func (c *Controller) authorize(r *http.Request) error {
	if c.noAuth {
		return nil
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(c.token)) != 1 {
		return fmt.Errorf("%w: writes need the header Authorization: Bearer TOKEN", ErrUnauthorized)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	if code == http.StatusNoContent || v == nil {
		w.WriteHeader(code)
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encode answer"}`)
	}
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// decode reads a JSON body into v. strict refuses unknown fields (the /v1
// API, so that a typo is an error rather than a silently ignored key); the
// seed's endpoints are lenient like the seed's Flask app. Errors name the
// field where the decoder can tell.
func decode(r *http.Request, v any, strict bool) error {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errField(ErrTooLarge, "body", "larger than %d bytes", mbe.Limit)
		}
		return errField(ErrInvalid, "body", "read: %v", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return errField(ErrInvalid, "body", "empty (want a JSON object)")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return errField(ErrInvalid, "body", "malformed JSON: data after the object")
	}
	return nil
}

func jsonError(err error) error {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
		fe  *fieldError
	)
	switch {
	case errors.As(err, &fe):
		return fe
	case errors.As(err, &syn):
		return errField(ErrInvalid, "body", "malformed JSON at byte %d: %v", syn.Offset, err)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "body"
		}
		return errField(ErrInvalid, field, "want %s, got JSON %s", typ.Type, typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errField(ErrInvalid, "body", "malformed JSON: unexpected end")
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return errField(ErrInvalid, strings.Trim(name, `"`), "unknown field")
	}
	return errField(ErrInvalid, "body", "malformed JSON: %v", err)
}
