// Package agent is the per-host daemon: it runs containers through
// internal/runtime, gives each its network namespace (internal/cnet),
// reports host statistics, and takes part in live migrations, as the
// source (driving internal/migration) or as the destination (pre-staging,
// receiving images, restoring, committing or aborting). It admits
// containers against its capacity (capacity.go), samples their use
// (usage.go) and serves Prometheus metrics (metrics.go).
//
// The API is HTTP+JSON. Reads are open; writes need "Authorization: Bearer
// TOKEN" unless the agent runs without a token. Errors are {"error": "..."}
// with 400 for bad input, 404 for unknown containers or hosts, 409 for a
// container that is busy (already migrating), exists, or does not fit in
// the free capacity, and 5xx only for the agent's own failures.
package agent
