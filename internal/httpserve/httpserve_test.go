package httpserve

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A client that never finishes its request head is disconnected once
// ReadHeaderTimeout has passed (shortened here; New's is 10 s).
func TestSlowlorisDisconnected(t *testing.T) {
	srv := New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	if srv.ReadHeaderTimeout != ReadHeaderTimeout || srv.IdleTimeout != IdleTimeout || srv.MaxHeaderBytes != MaxHeaderBytes {
		t.Fatalf("New: %+v", srv)
	}
	srv.ReadHeaderTimeout = 300 * time.Millisecond
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, srv, time.Second, "test", l) }()
	defer func() { cancel(); <-done }()

	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	// One header line at a time, never the blank line that ends them.
	go func() {
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
		for i := 0; i < 50; i++ {
			time.Sleep(50 * time.Millisecond)
			if _, err := io.WriteString(c, "X-Slow: 1\r\n"); err != nil {
				return
			}
		}
	}()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	took := time.Since(start)
	if took > 2*time.Second {
		t.Fatalf("still connected after %v (%v)", took, err)
	}
	// Go answers a timed-out head with nothing, or with 408.
	if len(b) > 0 && !strings.Contains(string(b), "408") {
		t.Fatalf("answer %q", b)
	}
	t.Logf("disconnected after %v", took)
}

// JSONBody answers a body past the limit with *http.MaxBytesError.
func TestJSONBodyLimit(t *testing.T) {
	srv := New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		JSONBody(w, r)
		_, err := io.ReadAll(r.Body)
		if IsTooLarge(err) {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
		}
	}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, srv, time.Second, "test", l) }()
	defer func() { cancel(); <-done }()
	for size, want := range map[int]int{JSONLimit: 200, JSONLimit + 1: 413} {
		resp, err := http.Post("http://"+l.Addr().String()+"/", "application/json", bytes.NewReader(make([]byte, size)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%d bytes: %d, want %d", size, resp.StatusCode, want)
		}
	}
}

// Shutdown lets a request in flight finish, and Draining tells handlers
// that would otherwise never end.
func TestServeGraceful(t *testing.T) {
	started := make(chan struct{})
	srv := New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/follow" {
			close(started)
			<-Draining(r.Context())
			io.WriteString(w, "drained")
			return
		}
	}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, srv, 5*time.Second, "test", l) }()
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + l.Addr().String() + "/follow")
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	<-started
	t0 := time.Now()
	cancel()
	if s := <-got; s != "drained" {
		t.Fatalf("in-flight request: %q", s)
	}
	if err := <-done; err != nil || time.Since(t0) > 3*time.Second {
		t.Fatalf("Serve: %v after %v", err, time.Since(t0))
	}
}
