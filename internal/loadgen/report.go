package loadgen

import (
	"time"
)

// ConnReport is what one connection saw over the whole run.
type ConnReport struct {
	ID         int    `json:"id"`
	Connected  bool   `json:"connected"`
	Sessions   int    `json:"sessions"`
	Drops      int64  `json:"drops"`
	Reconnects int64  `json:"reconnects"`
	LastError  string `json:"last_error,omitempty"`
	SeqTotals
	PingsSent      uint64  `json:"pings_sent"`
	EchoesReceived uint64  `json:"echoes_received"`
	RTTOverCap     uint64  `json:"rtt_over_cap"`
	BytesSent      uint64  `json:"bytes_sent"`
	BytesReceived  uint64  `json:"bytes_received"`
	MaxGapMs       float64 `json:"max_gap_ms"`
	FirstFrameNs   int64   `json:"first_frame_unix_ns,omitempty"`
	LastFrameNs    int64   `json:"last_frame_unix_ns,omitempty"`
	Gaps           []Gap   `json:"gaps"`
}

// Report is the /report answer: cumulative, never reset.
type Report struct {
	Time        time.Time    `json:"time"`
	Started     time.Time    `json:"started"`
	GapMinMs    float64      `json:"gap_min_ms"`
	Connections []ConnReport `json:"connections"`
}

// Report returns every connection's cumulative state.
func (g *Generator) Report() Report {
	g.mu.Lock()
	r := Report{Time: time.Now(), Started: g.started, GapMinMs: msOf(g.cfg.GapMin)}
	g.mu.Unlock()
	for _, c := range g.conns {
		c.mu.Lock()
		cr := ConnReport{ID: c.id, Connected: c.connected, Sessions: c.sessions, Drops: c.drops, Reconnects: c.reconnects,
			LastError: c.lastErr, SeqTotals: c.totals(), PingsSent: c.pings, EchoesReceived: c.echoes, RTTOverCap: c.overCap,
			BytesSent: c.bytesSent, BytesReceived: c.bytesRecv, MaxGapMs: msOf(c.maxGap), Gaps: append([]Gap{}, c.gaps...)}
		if !c.firstFrame.IsZero() {
			cr.FirstFrameNs, cr.LastFrameNs = c.firstFrame.UnixNano(), c.lastFrame.UnixNano()
		}
		c.mu.Unlock()
		r.Connections = append(r.Connections, cr)
	}
	return r
}

// Totals adds up the connections (ID is -1, Connected means all are up).
func (r Report) Totals() (t ConnReport) {
	t.ID, t.Connected = -1, len(r.Connections) > 0
	for _, c := range r.Connections {
		t.Sessions += c.Sessions
		t.Connected = t.Connected && c.Connected
		t.Drops += c.Drops
		t.Reconnects += c.Reconnects
		t.SeqTotals = t.SeqTotals.Plus(c.SeqTotals)
		t.PingsSent += c.PingsSent
		t.EchoesReceived += c.EchoesReceived
		t.RTTOverCap += c.RTTOverCap
		t.BytesSent += c.BytesSent
		t.BytesReceived += c.BytesReceived
		t.MaxGapMs = max(t.MaxGapMs, c.MaxGapMs)
	}
	return t
}

// MaxGapEndingIn returns the longest frame gap on any connection that
// ended within (from, to] — the outage the clients felt from an event in
// that window: a freeze's gap ends with the first frame after the
// restore. Gaps are assigned by their end, not by overlap, so a gap that
// began a few ms before the window (the last frame before a freeze) is
// not also counted for the previous window. found is false when no kept
// gap (at least GapMinMs long) ended in the window.
func (r Report) MaxGapEndingIn(from, to time.Time) (ms float64, found bool) {
	for _, c := range r.Connections {
		for _, g := range c.Gaps {
			if e := g.End(); e.After(from) && !e.After(to) && g.Ms > ms {
				ms, found = g.Ms, true
			}
		}
	}
	return ms, found
}
