package experiment

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/containerflow/containerflow/internal/loadgen"
	"github.com/containerflow/containerflow/internal/nsrun"
	"github.com/containerflow/containerflow/internal/results"
	"github.com/containerflow/containerflow/internal/workload/ws"
)

// nsHTTPClient makes its connections from inside a network namespace.
func nsHTTPClient(ns string, timeout time.Duration) *http.Client {
	d := &net.Dialer{Timeout: timeout}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		MaxIdleConnsPerHost: 2,
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = nsrun.Do(ns, func() error {
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
}

func getJSON(ctx context.Context, hc *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.Unmarshal(b, v)
}

// runState is what the migration loop tells the collector.
type runState struct {
	mu     sync.Mutex
	host   string
	active bool
	event  bool // a migration started since the last row
}

func (s *runState) begin() {
	s.mu.Lock()
	s.active, s.event = true, true
	s.mu.Unlock()
}

func (s *runState) end(host string) {
	s.mu.Lock()
	s.active, s.host = false, host
	s.mu.Unlock()
}

// take returns the state for a row and clears the event flag (as the
// seed's collector deleted its flag file). A migration that began and
// ended within one interval still marks that row active.
func (s *runState) take() (host string, active, event bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	host, active, event = s.host, s.active || s.event, s.event
	s.event = false
	return
}

// collector scrapes the server and the load generator every interval and
// appends a row to metrics.csv.
type collector struct {
	hc         *http.Client
	serverURL  string // .../metrics
	loadgenURL string // .../metrics
	csv        *results.CSVWriter
	state      *runState
	start      time.Time
	interval   time.Duration
	onRow      func(results.Row)

	mu   sync.Mutex
	rows []results.Row
	err  error
}

func (c *collector) run(ctx context.Context) {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c.tick(ctx, now)
		}
	}
}

func (c *collector) tick(ctx context.Context, now time.Time) {
	// Both scrapes run at once and each is bounded below the interval, so
	// a frozen server costs one row's server cells, not the schedule.
	sctx, cancel := context.WithTimeout(ctx, c.interval*9/10)
	defer cancel()
	var (
		sm ws.Metrics
		lm loadgen.Metrics
		wg sync.WaitGroup
		se error
		le error
	)
	wg.Add(2)
	go func() { defer wg.Done(); se = getJSON(sctx, c.hc, c.serverURL, &sm) }()
	go func() { defer wg.Done(); le = getJSON(sctx, c.hc, c.loadgenURL, &lm) }()
	wg.Wait()
	host, active, event := c.state.take()
	row := results.Row{Time: now, Elapsed: now.Sub(c.start), MigrationEvent: event, MigrationActive: active, Host: host}
	if se == nil {
		row.Server = &sm
	}
	if le == nil {
		row.Loadgen = &lm
	}
	err := c.csv.Write(row)
	c.mu.Lock()
	c.rows = append(c.rows, row)
	if err != nil && c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	if c.onRow != nil {
		c.onRow(row)
	}
}

func (c *collector) result() ([]results.Row, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]results.Row(nil), c.rows...), c.err
}
