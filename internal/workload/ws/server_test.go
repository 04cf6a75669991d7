package ws

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func dial(t *testing.T, ctx context.Context, url string) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func read(t *testing.T, ctx context.Context, c *websocket.Conn) Message {
	t.Helper()
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, b, err := c.Read(rctx)
	if err != nil {
		t.Fatal(err)
	}
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return m
}

// Frames are numbered from 0 with the padding; a fresh ping is echoed
// with both timestamps, a stale one is not; quiesce stops both.
func TestFramesEchoesQuiesce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := New(Config{FPS: 100})
	hs := httptest.NewServer(s.Handler(ctx))
	defer hs.Close()
	c := dial(t, ctx, hs.URL)
	for want := int64(0); want < 3; want++ {
		m := read(t, ctx, c)
		if m.Type != TypeFrame || m.Seq != want || len(m.Padding) != 512 || m.Size != 512 || m.Ts == 0 || m.IsEcho() {
			t.Fatalf("frame %d: %+v", want, m)
		}
	}
	stale, _ := json.Marshal(Ping{Seq: 1, Ts: time.Now().Add(-2 * time.Second).UnixNano()})
	fresh, _ := json.Marshal(Ping{Seq: 2, Ts: time.Now().UnixNano()})
	for _, b := range [][]byte{stale, fresh} {
		if err := c.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatal(err)
		}
	}
	for {
		m := read(t, ctx, c)
		if !m.IsEcho() {
			continue
		}
		if m.Seq != 2 || m.ClientTs == 0 || m.ServerTs < m.ClientTs {
			t.Fatalf("echo: %+v (the stale ping must not be echoed)", m)
		}
		break
	}
	if got := s.Snapshot(); got.PingsStale != 1 || got.ConnectedClients != 1 || got.TotalClients != 1 {
		t.Fatalf("metrics %+v", got)
	}

	if !s.ToggleQuiesce() {
		t.Fatal("first toggle must quiesce")
	}
	time.Sleep(50 * time.Millisecond) // let frames already written arrive
	before := s.Snapshot().FramesSent
	time.Sleep(150 * time.Millisecond)
	if after := s.Snapshot().FramesSent; after != before {
		t.Fatalf("quiesced server sent %d frames", after-before)
	}
	s.ToggleQuiesce()
	// Numbering goes on without a hole.
	var last int64 = -1
	for i := 0; i < 30; i++ {
		m := read(t, ctx, c)
		if m.IsEcho() {
			continue
		}
		if last >= 0 && m.Seq != last+1 {
			t.Fatalf("sequence hole: %d after %d", m.Seq, last)
		}
		last = m.Seq
	}
}

func TestMetricsFormats(t *testing.T) {
	s := New(Config{})
	hs := httptest.NewServer(s.MetricsHandler())
	defer hs.Close()
	resp, err := http.Get(hs.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// The seed's collector reads exactly these names.
	for _, k := range []string{"connected_clients", "total_clients", "uptime_seconds", "bytes_sent", "bytes_received", "cpu_percent", "memory_mb"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON metrics lack %q", k)
		}
	}
	for _, how := range []func(*http.Request){
		func(r *http.Request) { r.URL.RawQuery = "format=prometheus" },
		func(r *http.Request) {
			r.Header.Set("Accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
		},
	} {
		req, _ := http.NewRequest("GET", hs.URL+"/metrics", nil)
		how(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") ||
			!strings.Contains(string(b), "# TYPE wsserver_connected_clients gauge\nwsserver_connected_clients 0\n") {
			t.Fatalf("prometheus text: %s", b)
		}
	}
}

func TestParseStatCPU(t *testing.T) {
	// comm with spaces and a ')' in it; utime 1234, stime 56.
	line := "4242 (cflow (ws) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 1234 56 0 0 20 0 9 0 100 0 0"
	u, s, ok := parseStatCPU(line)
	if !ok || u != 1234 || s != 56 {
		t.Fatalf("got %d %d %v", u, s, ok)
	}
	if _, _, ok := parseStatCPU("garbage"); ok {
		t.Fatal("garbage parsed")
	}
	if procCPUSeconds() < 0 {
		t.Fatal("negative CPU time")
	}
}
