package loadgen

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/workload/ws"
)

func startServer(t *testing.T, ctx context.Context, fps int) (*ws.Server, *httptest.Server) {
	t.Helper()
	s := ws.New(ws.Config{FPS: fps})
	hs := httptest.NewServer(s.Handler(ctx))
	t.Cleanup(hs.Close)
	return s, hs
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The load generator against the real server on loopback: every frame
// arrives in order, pings are echoed, the metrics add up, and a paused
// server (quiesce) shows as a frame gap without any frame lost.
func TestAgainstServer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, hs := startServer(t, ctx, 50)
	g, err := New(Config{URL: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws", Connections: 3, RampUp: 10 * time.Millisecond, PingInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	waitFor(t, "3 connections", 5*time.Second, func() bool { return g.Scrape().ConnectedClients == 3 })
	time.Sleep(300 * time.Millisecond)
	m := g.Scrape()
	if m.ConnectedClients != 3 || m.TotalClients != 3 || m.RTTSamples == 0 || !m.P50RttMs.Valid() || m.Received == 0 {
		t.Fatalf("metrics after warm-up: %+v", m)
	}
	if m.FramesPerSecond < 100 || m.FramesPerSecond > 200 {
		t.Errorf("3 connections at 50 fps: %.0f frames/s", m.FramesPerSecond)
	}
	// The seed's JSON names are there.
	b, _ := json.Marshal(m)
	for _, k := range []string{`"connected_clients"`, `"p95_rtt_ms"`, `"jitter_ms"`, `"connection_drops"`, `"frames_lost"`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("metrics JSON lacks %s: %s", k, b)
		}
	}

	srv.ToggleQuiesce()
	time.Sleep(250 * time.Millisecond)
	srv.ToggleQuiesce()
	time.Sleep(200 * time.Millisecond)
	r := g.Report()
	tot := r.Totals()
	if tot.Lost != 0 || tot.Duplicated != 0 || tot.Reordered != 0 || tot.Drops != 0 {
		t.Fatalf("frames not all accounted for: %+v", tot)
	}
	if tot.MaxGapMs < 200 {
		t.Errorf("a 250 ms pause shows as a %.0f ms gap", tot.MaxGapMs)
	}
	if ms, ok := r.MaxGapEndingIn(time.Now().Add(-time.Second), time.Now()); !ok || ms < 200 {
		t.Errorf("the pause is not found in its window: %v %v", ms, ok)
	}
	cancel()
	<-done
}

// A connection that breaks is counted as dropped and re-opened.
func TestReconnect(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sctx, stopServer := context.WithCancel(ctx)
	var h atomic.Pointer[http.Handler]
	h1 := ws.New(ws.Config{FPS: 30}).Handler(sctx)
	h.Store(&h1)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*h.Load()).ServeHTTP(w, r) }))
	defer hs.Close()
	g, err := New(Config{URL: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws", Connections: 2, RampUp: 10 * time.Millisecond,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go g.Run(ctx) //nolint:errcheck // ends with ctx
	waitFor(t, "2 connections", 5*time.Second, func() bool { return g.Scrape().ConnectedClients == 2 })
	// Ending the server's context closes every WebSocket it serves; its
	// listener stays, so the load generator can reconnect to a new
	// handler context.
	stopServer()
	waitFor(t, "2 drops", 5*time.Second, func() bool { return g.Report().Totals().Drops >= 2 })
	h2 := ws.New(ws.Config{FPS: 30}).Handler(ctx)
	h.Store(&h2)
	waitFor(t, "2 reconnects", 5*time.Second, func() bool {
		r := g.Report().Totals()
		return r.Reconnects >= 2 && r.Connected
	})
	// Every drop was followed by a reconnect (the old handler context
	// closed some re-opened connections too, so there may be more than 2).
	m := g.Scrape()
	if m.ConnectionDrops < 2 || m.Reconnects != m.ConnectionDrops || m.ConnectedClients != 2 {
		t.Fatalf("drops %d reconnects %d connected %d", m.ConnectionDrops, m.Reconnects, m.ConnectedClients)
	}
}

// /metrics resets the interval; /report does not.
func TestHandler(t *testing.T) {
	g, err := New(Config{URL: "ws://127.0.0.1:1/ws", Connections: 1})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(g.Handler())
	defer hs.Close()
	for _, p := range []string{"/metrics", "/report", "/health"} {
		resp, err := http.Get(hs.URL + p)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", p, resp, err)
		}
		var v map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		resp.Body.Close()
		if p == "/metrics" && v["p50_rtt_ms"] != nil {
			t.Errorf("no sample must be null, got %v", v["p50_rtt_ms"])
		}
	}
}
