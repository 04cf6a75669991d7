package loadgen

import (
	"sync"
	"time"
)

// maxGaps bounds the gaps kept per connection (about a day of migrations
// every few seconds); the longest gap is tracked regardless.
const maxGaps = 100000

// Gap is a silence between two consecutive frames on one connection.
type Gap struct {
	EndUnixNs int64   `json:"end_unix_ns"` // arrival of the frame that ended it
	Ms        float64 `json:"ms"`
}

// Start returns when the gap began.
func (g Gap) Start() time.Time { return time.Unix(0, g.EndUnixNs-int64(g.Ms*1e6)) }

// End returns when the gap ended.
func (g Gap) End() time.Time { return time.Unix(0, g.EndUnixNs) }

// conn is one connection's state across its sessions.
type conn struct {
	id int
	up chan struct{} // closed when first connected

	mu         sync.Mutex
	connected  bool
	sessions   int
	drops      int64
	reconnects int64
	lastErr    string
	seq        SeqCheck  // current session
	past       SeqTotals // sessions before it
	lastFrame  time.Time // kept across sessions: a reconnect is part of the outage
	firstFrame time.Time
	maxGap     time.Duration
	gaps       []Gap
	win        rttWindow
	bytesSent  uint64
	bytesRecv  uint64
	pings      uint64
	echoes     uint64
	overCap    uint64
}

func (c *conn) startSession() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sessions == 0 {
		close(c.up)
	} else {
		c.reconnects++
	}
	c.sessions++
	c.connected = true
	c.past = c.past.Add(&c.seq)
	c.seq = SeqCheck{}
}

// endSession marks the connection down; err nil means we closed it.
func (c *conn) endSession(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.connected = false
	if err != nil {
		c.drops++
		c.lastErr = err.Error()
	}
}

func (c *conn) setError(err error) {
	c.mu.Lock()
	c.lastErr = err.Error()
	c.mu.Unlock()
}

func (c *conn) sentPing(n int) {
	c.mu.Lock()
	c.pings++
	c.bytesSent += uint64(n)
	c.mu.Unlock()
}

func (c *conn) received(n int) {
	c.mu.Lock()
	c.bytesRecv += uint64(n)
	c.mu.Unlock()
}

func (c *conn) echo(n int, rttMs, capMs float64) {
	c.mu.Lock()
	c.bytesRecv += uint64(n)
	c.echoes++
	if rttMs < 0 || rttMs >= capMs {
		c.overCap++
	}
	c.win.add(rttMs, capMs)
	c.mu.Unlock()
}

func (c *conn) frame(n int, seq int64, now time.Time, gapMin time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bytesRecv += uint64(n)
	c.seq.See(seq)
	c.win.frames++
	if c.firstFrame.IsZero() {
		c.firstFrame = now
	}
	if !c.lastFrame.IsZero() {
		gap := now.Sub(c.lastFrame)
		c.maxGap = max(c.maxGap, gap)
		c.win.maxGap = max(c.win.maxGap, gap)
		if gap >= gapMin && len(c.gaps) < maxGaps {
			c.gaps = append(c.gaps, Gap{EndUnixNs: now.UnixNano(), Ms: msOf(gap)})
		}
	}
	c.lastFrame = now
}

func (c *conn) totals() SeqTotals { return c.past.Add(&c.seq) }
