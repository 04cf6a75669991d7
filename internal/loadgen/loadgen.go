package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/containerflow/containerflow/internal/metrics"
	"github.com/containerflow/containerflow/internal/workload/ws"
)

// Config configures a Generator. Zero values take the seed's defaults.
type Config struct {
	URL          string        // ws://HOST:PORT/ws
	Connections  int           // 4
	RampUp       time.Duration // between opening connections (200 ms)
	PingInterval time.Duration // 100 ms
	RTTCap       time.Duration // RTTs at or above are left out of the seed's figures (1 s)
	BackoffMin   time.Duration // 500 ms
	BackoffMax   time.Duration // 3 s
	// NoReconnect leaves a dropped connection down, as the seed did.
	NoReconnect bool
	// ReadTimeout: a connection on which nothing arrives for this long is
	// given up as dropped (30 s). Pings are echoed every PingInterval, so
	// silence this long is no migration pause.
	ReadTimeout time.Duration
	// GapMin: gaps between frames at least this long are kept with their
	// time for /report (50 ms; at 30 fps frames are 33 ms apart).
	GapMin time.Duration
	// Dial, when set, opens the TCP connections (tests, namespaces).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	Log  *slog.Logger
}

func (c *Config) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.Connections <= 0 {
		c.Connections = 4
	}
	set(&c.RampUp, 200*time.Millisecond)
	set(&c.PingInterval, 100*time.Millisecond)
	set(&c.RTTCap, time.Second)
	set(&c.BackoffMin, 500*time.Millisecond)
	set(&c.BackoffMax, 3*time.Second)
	set(&c.ReadTimeout, 30*time.Second)
	set(&c.GapMin, 50*time.Millisecond)
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Generator drives the connections. Create it with New, start it with Run.
type Generator struct {
	cfg   Config
	hc    *http.Client
	conns []*conn

	mu         sync.Mutex // guards lastScrape
	lastScrape time.Time
	started    time.Time
}

// New returns a generator for cfg.
func New(cfg Config) (*Generator, error) {
	cfg.defaults()
	if cfg.URL == "" {
		return nil, errors.New("loadgen: no server URL")
	}
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: time.Second}
	dial := cfg.Dial
	if dial == nil {
		dial = d.DialContext
	}
	g := &Generator{cfg: cfg, hc: &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}}
	for i := range cfg.Connections {
		g.conns = append(g.conns, &conn{id: i, up: make(chan struct{})})
	}
	return g, nil
}

// Run opens the connections one after the other (RampUp apart, each
// retried with backoff until it is up) and keeps them going until ctx
// ends.
func (g *Generator) Run(ctx context.Context) error {
	g.mu.Lock()
	g.started, g.lastScrape = time.Now(), time.Now()
	g.mu.Unlock()
	var wg sync.WaitGroup
	defer wg.Wait()
	for i, c := range g.conns {
		wg.Add(1)
		go func() { defer wg.Done(); g.runConn(ctx, c) }()
		select {
		case <-c.up:
		case <-ctx.Done():
			return nil
		}
		g.cfg.Log.Info("connected", "conn", c.id)
		if i < len(g.conns)-1 {
			select {
			case <-time.After(g.cfg.RampUp):
			case <-ctx.Done():
				return nil
			}
		}
	}
	g.cfg.Log.Info("all connections up", "connections", len(g.conns))
	<-ctx.Done()
	return nil
}

// runConn keeps one connection going: connect with backoff, run a session
// until it drops, count the drop, and reconnect unless told not to.
func (g *Generator) runConn(ctx context.Context, c *conn) {
	backoff := g.cfg.BackoffMin
	for ctx.Err() == nil {
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		wc, _, err := websocket.Dial(hctx, g.cfg.URL, &websocket.DialOptions{HTTPClient: g.hc})
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			g.cfg.Log.Info("connect failed", "conn", c.id, "err", err, "retry_in", backoff)
			c.setError(err)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(backoff*2, g.cfg.BackoffMax)
			continue
		}
		wc.SetReadLimit(1 << 20)
		c.startSession()
		began := time.Now()
		err = g.session(ctx, c, wc)
		wc.CloseNow() // after a proper close (see session) this is a no-op
		if ctx.Err() != nil {
			c.endSession(nil)
			return
		}
		g.cfg.Log.Warn("connection dropped", "conn", c.id, "err", err)
		c.endSession(err)
		if g.cfg.NoReconnect {
			return
		}
		// Reconnect at once after a connection that lived a while (the
		// outage should not include a wait of ours), but back off when
		// connections die young, so a server that accepts and closes is
		// not hammered.
		if time.Since(began) > g.cfg.BackoffMax {
			backoff = g.cfg.BackoffMin
			continue
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(backoff*2, g.cfg.BackoffMax)
	}
}

// session runs pings and reads on one WebSocket until either fails or
// ctx ends. Reads and writes run under their own timeouts, not under ctx:
// coder/websocket closes a connection abruptly when an operation's
// context ends, and a stopping load generator should close it properly.
func (g *Generator) session(ctx context.Context, c *conn, wc *websocket.Conn) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopClose := context.AfterFunc(sctx, func() {
		if ctx.Err() != nil {
			_ = wc.Close(websocket.StatusNormalClosure, "load generator stopping")
		} else {
			wc.CloseNow() // a ping failed: the connection is gone anyway
		}
	})
	defer stopClose()
	pingErr := make(chan error, 1)
	go func() {
		defer cancel()
		pingErr <- g.pingLoop(sctx, c, wc)
	}()
	err := g.readLoop(c, wc)
	cancel()
	if perr := <-pingErr; perr != nil && ctx.Err() == nil {
		// A failed write is what ended the read; report the cause.
		return perr
	}
	return err
}

func (g *Generator) pingLoop(ctx context.Context, c *conn, wc *websocket.Conn) error {
	t := time.NewTicker(g.cfg.PingInterval)
	defer t.Stop()
	var seq int64
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			b, _ := json.Marshal(ws.Ping{Seq: seq, Ts: now.UnixNano()})
			wctx, cancel := context.WithTimeout(context.Background(), g.cfg.ReadTimeout)
			err := wc.Write(wctx, websocket.MessageText, b)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("send ping: %w", err)
			}
			seq++
			c.sentPing(len(b))
		}
	}
}

func (g *Generator) readLoop(c *conn, wc *websocket.Conn) error {
	capMs := float64(g.cfg.RTTCap) / 1e6
	for {
		rctx, cancel := context.WithTimeout(context.Background(), g.cfg.ReadTimeout)
		_, data, err := wc.Read(rctx)
		timedOut := rctx.Err() != nil
		cancel()
		now := time.Now()
		if err != nil {
			if timedOut {
				return fmt.Errorf("nothing received for %v", g.cfg.ReadTimeout)
			}
			return fmt.Errorf("read: %w", err)
		}
		var m ws.Message
		if err := json.Unmarshal(data, &m); err != nil {
			c.received(len(data))
			continue
		}
		if m.IsEcho() {
			c.echo(len(data), float64(now.UnixNano()-m.ClientTs)/1e6, capMs)
		} else {
			c.frame(len(data), m.Seq, now, g.cfg.GapMin)
		}
	}
}

// Metrics is the /metrics answer: the seed's fields with the seed's names
// first (RTT figures are null when no echo arrived in the interval), then
// what this load generator adds. RTT, jitter, frame-gap and rate figures
// cover the interval since the previous scrape; counters are cumulative.
type Metrics struct {
	ConnectedClients int         `json:"connected_clients"`
	TotalClients     int         `json:"total_clients"`
	AvgRttMs         metrics.Opt `json:"avg_rtt_ms"`
	P50RttMs         metrics.Opt `json:"p50_rtt_ms"`
	P95RttMs         metrics.Opt `json:"p95_rtt_ms"`
	P99RttMs         metrics.Opt `json:"p99_rtt_ms"`
	MaxRttMs         metrics.Opt `json:"max_rtt_ms"`
	JitterMs         metrics.Opt `json:"jitter_ms"`
	BytesSent        uint64      `json:"bytes_sent"`
	BytesReceived    uint64      `json:"bytes_received"`
	ConnectionDrops  int64       `json:"connection_drops"`

	IntervalS        float64     `json:"interval_s"`
	RTTSamples       int         `json:"rtt_samples"`
	RTTOverCap       uint64      `json:"rtt_over_cap"`
	UncappedP99RttMs metrics.Opt `json:"uncapped_p99_rtt_ms"`
	UncappedMaxRttMs metrics.Opt `json:"uncapped_max_rtt_ms"`
	FramesPerSecond  float64     `json:"frames_per_s"`
	// FrameGapMaxMs is the longest gap between two frames on any
	// connection that ended in the interval, or is still open at its end.
	FrameGapMaxMs  float64 `json:"frame_gap_max_ms"`
	Reconnects     int64   `json:"reconnects"`
	PingsSent      uint64  `json:"pings_sent"`
	EchoesReceived uint64  `json:"echoes_received"`
	SeqTotals
}

// Scrape returns the metrics of the interval since the previous scrape
// and starts a new interval.
func (g *Generator) Scrape() Metrics {
	g.mu.Lock()
	now := time.Now()
	iv := now.Sub(g.lastScrape)
	g.lastScrape = now
	g.mu.Unlock()
	m := Metrics{TotalClients: len(g.conns), IntervalS: iv.Seconds()}
	var agg rttAgg
	var frames uint64
	var maxGap time.Duration
	for _, c := range g.conns {
		c.mu.Lock()
		if c.connected {
			m.ConnectedClients++
		}
		agg.merge(&c.win)
		frames += c.win.frames
		maxGap = max(maxGap, c.win.maxGap)
		if !c.lastFrame.IsZero() {
			// A gap still open, also while the connection is being
			// re-opened: the client is waiting either way.
			maxGap = max(maxGap, now.Sub(c.lastFrame))
		}
		c.win.reset()
		m.BytesSent += c.bytesSent
		m.BytesReceived += c.bytesRecv
		m.ConnectionDrops += c.drops
		m.Reconnects += c.reconnects
		m.PingsSent += c.pings
		m.EchoesReceived += c.echoes
		m.SeqTotals = m.SeqTotals.Plus(c.totals())
		c.mu.Unlock()
	}
	agg.fill(&m)
	if iv > 0 {
		m.FramesPerSecond = float64(frames) / iv.Seconds()
	}
	m.FrameGapMaxMs = msOf(maxGap)
	return m
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Handler serves /metrics (resets the interval; one scraper only),
// /report (cumulative, no reset) and /health.
func (g *Generator) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, g.Scrape())
	})
	mux.HandleFunc("/report", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, g.Report())
	})
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]string{"status": "ok"})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// ListenAndRun serves the metrics on addr and runs the generator until
// ctx ends.
func (g *Generator) ListenAndRun(ctx context.Context, addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("loadgen metrics listen %s: %w", addr, err)
	}
	hs := &http.Server{Handler: g.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(l) }()
	defer hs.Close()
	g.cfg.Log.Info("load generator up", "target", g.cfg.URL, "connections", g.cfg.Connections, "metrics", l.Addr().String())
	return g.Run(ctx)
}
