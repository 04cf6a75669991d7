package stream

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"
)

// Gap is a silence between two consecutive arrivals of one kind of record
// on one connection.
type Gap struct {
	Kind byte          // KindEcho or KindServer
	End  time.Time     // arrival that ended it
	Len  time.Duration // its length
}

// ConnStats is what one connection saw.
type ConnStats struct {
	Sent    uint64   // client records sent
	Echo    SeqCheck // echoes of them
	Server  SeqCheck // the server's own records
	Gaps    []Gap    // gaps above the threshold
	Dropped bool     // the connection broke
	Err     string   `json:",omitempty"`
}

// Latency is one record's delay as the client saw it: for an echo the
// round trip from the client's send, for a server record the one-way
// delay from the server's send (client and server share a clock in the
// testbed, which is one machine).
type Latency struct {
	Kind byte
	At   time.Time // arrival
	D    time.Duration
}

// Conn drives one workload connection.
type Conn struct {
	c        net.Conn
	interval time.Duration
	minGap   time.Duration
	keepLat  bool

	mu      sync.Mutex
	stats   ConnStats
	lat     []Latency     // with keepLat
	done    chan struct{} // closed by Stop
	written chan struct{} // closed when the writer has returned
	wg      sync.WaitGroup
}

// Start begins sending on c and reading what comes back. Gaps shorter than
// minGap are not kept.
func Start(c net.Conn, interval, minGap time.Duration) *Conn {
	return start(c, interval, minGap, false)
}

// StartWithLatency is Start keeping every record's latency (Latencies):
// for an observer connection, whose every delay counts, not only its gaps.
func StartWithLatency(c net.Conn, interval, minGap time.Duration) *Conn {
	return start(c, interval, minGap, true)
}

func start(c net.Conn, interval, minGap time.Duration, keepLat bool) *Conn {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	k := &Conn{c: c, interval: interval, minGap: minGap, keepLat: keepLat, done: make(chan struct{}), written: make(chan struct{})}
	k.wg.Add(2)
	go k.write()
	go k.read()
	return k
}

func (k *Conn) fail(err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.stats.Dropped {
		k.stats.Dropped = true
		k.stats.Err = err.Error()
	}
}

func (k *Conn) write() {
	defer k.wg.Done()
	defer close(k.written)
	t := time.NewTicker(k.interval)
	defer t.Stop()
	buf := make([]byte, RecordSize)
	for {
		select {
		case <-k.done:
			return
		case now := <-t.C:
			k.mu.Lock()
			k.stats.Sent++
			seq := k.stats.Sent
			k.mu.Unlock()
			Record{Kind: KindClient, Seq: seq, SentNs: now.UnixNano()}.Marshal(buf)
			_ = k.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := k.c.Write(buf); err != nil {
				k.fail(err)
				return
			}
		}
	}
}

func (k *Conn) read() {
	defer k.wg.Done()
	buf := make([]byte, RecordSize)
	// Each direction has its own clock: echoes stall until the client's
	// retransmission timer fires, the server's stream only until the
	// server runs again.
	last := map[byte]time.Time{KindEcho: time.Now(), KindServer: time.Now()}
	for {
		_ = k.c.SetReadDeadline(time.Now().Add(30 * time.Second))
		r, err := ReadRecord(k.c, buf)
		now := time.Now()
		if err != nil {
			select {
			case <-k.done: // we closed it
			default:
				k.fail(err)
			}
			return
		}
		k.mu.Lock()
		if prev, ok := last[r.Kind]; ok {
			if gap := now.Sub(prev); gap >= k.minGap {
				k.stats.Gaps = append(k.stats.Gaps, Gap{Kind: r.Kind, End: now, Len: gap})
			}
			last[r.Kind] = now
		}
		if k.keepLat && r.SentNs > 0 {
			k.lat = append(k.lat, Latency{Kind: r.Kind, At: now, D: now.Sub(time.Unix(0, r.SentNs))})
		}
		switch r.Kind {
		case KindEcho:
			k.stats.Echo.See(r.Seq)
		case KindServer:
			k.stats.Server.See(r.Seq)
		default:
			k.mu.Unlock()
			k.fail(errors.New("unexpected record kind"))
			return
		}
		k.mu.Unlock()
	}
}

// Stats returns a snapshot.
func (k *Conn) Stats() ConnStats {
	k.mu.Lock()
	defer k.mu.Unlock()
	s := k.stats
	s.Gaps = append([]Gap(nil), k.stats.Gaps...)
	return s
}

// Latencies returns the latencies of the records of the given kind (0:
// any) that arrived in [from, to); none unless started with
// StartWithLatency.
func (k *Conn) Latencies(kind byte, from, to time.Time) []time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []time.Duration
	for _, l := range k.lat {
		if (kind == 0 || l.Kind == kind) && !l.At.Before(from) && l.At.Before(to) {
			out = append(out, l.D)
		}
	}
	return out
}

// Stop stops sending, waits until every sent record has been echoed (or
// wait passes), then closes the connection and returns the final stats.
func (k *Conn) Stop(ctx context.Context, wait time.Duration) ConnStats {
	select {
	case <-k.done:
	default:
		close(k.done)
	}
	// The writer finishes the record it is sending before the count of
	// sent records is final.
	<-k.written
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		s := k.Stats()
		if s.Dropped || s.Echo.Next > s.Sent {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	k.c.Close()
	k.wg.Wait()
	return k.Stats()
}

// Unanswered is how many sent records never came back.
func (s ConnStats) Unanswered() uint64 {
	got := s.Echo.Received - s.Echo.Duplicated
	if got >= s.Sent {
		return 0
	}
	return s.Sent - got
}

// MaxGapIn returns the longest gap of the given kind (0: any) that ended
// in [from, to). A gap belongs to the window it ended in, so one long gap
// is never counted for two back-to-back migrations.
func (s ConnStats) MaxGapIn(kind byte, from, to time.Time) time.Duration {
	var m time.Duration
	for _, g := range s.Gaps {
		if kind != 0 && g.Kind != kind {
			continue
		}
		if !g.End.Before(from) && g.End.Before(to) && g.Len > m {
			m = g.Len
		}
	}
	return m
}
