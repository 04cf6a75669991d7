package stream

import (
	"context"
	"net"
	"testing"
	"time"
)

// Over loopback against the real server: an observer connection keeps a
// latency per record of both kinds, a plain one keeps none.
func TestLatencies(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go (&Server{Interval: 5 * time.Millisecond}).Serve(ctx, l) //nolint:errcheck // ends with ctx
	dial := func() net.Conn {
		c, err := net.Dial("tcp4", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	from := time.Now()
	obs := StartWithLatency(dial(), 5*time.Millisecond, time.Hour)
	plain := Start(dial(), 5*time.Millisecond, time.Hour)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		s := obs.Stats()
		if s.Echo.Received >= 5 && s.Server.Received >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no records: %+v", s)
		}
	}
	to := time.Now()
	obs.Stop(ctx, time.Second)
	plain.Stop(ctx, time.Second)
	for _, kind := range []byte{KindEcho, KindServer} {
		ls := obs.Latencies(kind, from, to)
		if len(ls) < 5 {
			t.Errorf("kind %c: %d latencies", kind, len(ls))
		}
		for _, d := range ls {
			if d < 0 || d > 10*time.Second {
				t.Errorf("kind %c: latency %v", kind, d)
			}
		}
	}
	if n := len(obs.Latencies(0, to.Add(time.Hour), to.Add(2*time.Hour))); n != 0 {
		t.Errorf("%d latencies outside the window", n)
	}
	if n := len(plain.Latencies(0, from, to.Add(time.Hour))); n != 0 {
		t.Errorf("a plain connection kept %d latencies", n)
	}
}
