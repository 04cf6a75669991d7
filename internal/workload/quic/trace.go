package quic

import (
	"sync"
	"time"

	"github.com/quic-go/quic-go/qlog"
	"github.com/quic-go/quic-go/qlogwriter"
)

// QUICStats is quic-go's own account of a connection (or of every
// connection of one client slot, across reconnects), taken from its qlog
// events.
type QUICStats struct {
	Handshakes      uint64 // completed TLS handshakes (qlog connection_state_updated: handshake_complete)
	PacketsSent     uint64 // transport:packet_sent
	PacketsReceived uint64 // transport:packet_received
	PacketsDropped  uint64 // transport:packet_dropped (undecryptable, duplicate, ...)
	PacketsLost     uint64 // recovery:packet_lost
	SpuriousLosses  uint64 // recovery:spurious_loss: declared lost, then acknowledged
	PTOs            uint64 // PTO expiries (recovery:metrics_updated with pto_count > 0)
	// LossTimes and PTOTimes say when, so that losses can be attributed to
	// a migration's time window (capped at maxEventTimes each).
	LossTimes []time.Time `json:",omitempty"`
	PTOTimes  []time.Time `json:",omitempty"`
}

const maxEventTimes = 100000

// LostIn and PTOsIn count the events in [from, to).
func (s QUICStats) LostIn(from, to time.Time) int { return countIn(s.LossTimes, from, to) }

// PTOsIn counts PTO expiries in [from, to).
func (s QUICStats) PTOsIn(from, to time.Time) int { return countIn(s.PTOTimes, from, to) }

func countIn(ts []time.Time, from, to time.Time) int {
	n := 0
	for _, t := range ts {
		if !t.Before(from) && t.Before(to) {
			n++
		}
	}
	return n
}

// counter is a qlogwriter.Trace and Recorder that counts instead of
// writing JSON: quic-go hands it the same typed events it would write to
// a qlog file, so these counts are exactly what a qlog would show.
type counter struct {
	mu sync.Mutex
	s  QUICStats
}

var _ qlogwriter.Trace = (*counter)(nil)

func (c *counter) AddProducer() qlogwriter.Recorder { return c }

func (c *counter) Close() error { return nil }

func (c *counter) RecordEvent(ev qlogwriter.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch e := ev.(type) {
	case qlog.PacketSent:
		c.s.PacketsSent++
	case qlog.PacketReceived:
		c.s.PacketsReceived++
	case qlog.PacketDropped:
		c.s.PacketsDropped++
	case qlog.PacketLost:
		c.s.PacketsLost++
		if len(c.s.LossTimes) < maxEventTimes {
			c.s.LossTimes = append(c.s.LossTimes, time.Now())
		}
	case qlog.SpuriousLoss:
		c.s.SpuriousLosses++
	case qlog.PTOCountUpdated:
		// quic-go reports the count going back to 0 too (on an ACK); only
		// an increase is an expiry.
		if e.PTOCount > 0 {
			c.s.PTOs++
			if len(c.s.PTOTimes) < maxEventTimes {
				c.s.PTOTimes = append(c.s.PTOTimes, time.Now())
			}
		}
	case qlog.ConnectionStateUpdated:
		if e.State == qlog.ConnectionStateHandshakeComplete {
			c.s.Handshakes++
		}
	}
}

func (c *counter) snapshot() QUICStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.s
	s.LossTimes = append([]time.Time(nil), c.s.LossTimes...)
	s.PTOTimes = append([]time.Time(nil), c.s.PTOTimes...)
	return s
}
