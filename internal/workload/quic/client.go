package quic

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	quicgo "github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlogwriter"

	"github.com/containerflow/containerflow/internal/workload/stream"
)

// ClientConfig says what a client does.
type ClientConfig struct {
	Addr      string        // server UDP address, host:port
	Conns     int           // concurrent connections (default 1)
	Interval  time.Duration // between requests, per connection (default 10 ms)
	MinGap    time.Duration // silences shorter than this are not kept (default 5 x Interval)
	ChunkSize int           // download payload per chunk (default DefaultChunkSize)
	Datagrams bool          // also send a datagram every interval and count the echoes
	// NoReconnect leaves a failed connection down instead of dialing a new
	// one; with reconnection, each new connection is one more handshake.
	NoReconnect bool
	// ListenPacket makes the UDP socket of each connection (nil: an
	// unbound udp4 socket); tests use it to open sockets in the client's
	// network namespace.
	ListenPacket func() (net.PacketConn, error)
	// OnResponse, if set, is told of every answered request: conn is the
	// connection's slot, sent when the request was issued, rtt its response
	// time. The per-connection stats keep only a histogram; experiments
	// that plot response time over time need each one. It is called from
	// the request's own goroutine, so it must be quick and safe for
	// concurrent use.
	OnResponse func(conn int, seq uint64, sent time.Time, rtt time.Duration)
}

func (c *ClientConfig) defaults() {
	if c.Conns <= 0 {
		c.Conns = 1
	}
	if c.Interval <= 0 {
		c.Interval = 10 * time.Millisecond
	}
	if c.MinGap <= 0 {
		c.MinGap = 5 * c.Interval
	}
	if c.ChunkSize <= 0 {
		c.ChunkSize = DefaultChunkSize
	}
	if c.ListenPacket == nil {
		c.ListenPacket = func() (net.PacketConn, error) { return net.ListenUDP("udp4", nil) }
	}
}

// Gap kinds.
const (
	GapResponse = "response" // between two responses arriving
	GapChunk    = "chunk"    // between two download chunks arriving
)

// Gap is a silence on one connection: from the last arrival before it to
// the first after it.
type Gap struct {
	Kind  string
	Start time.Time
	End   time.Time
	Len   time.Duration
}

// ConnStats is what one client connection saw (one slot: across
// reconnections, if any).
type ConnStats struct {
	Conn          int
	Requests      uint64          // requests sent
	Responses     stream.SeqCheck // by request number; Reordered is normal (one stream per request)
	ServerSeq     stream.SeqCheck // the server's response numbers: a restored server that forgot answers repeats them
	RequestErrors uint64          // requests whose stream failed
	Download      stream.SeqCheck // chunk numbers on the download stream: must be 1, 2, 3, ... exactly
	CorruptChunks uint64
	DownloadBytes uint64
	DatagramsSent uint64
	Datagrams     stream.SeqCheck // echoes; datagrams are unreliable, so Lost is information, not failure
	RespP50Ms     float64
	RespP99Ms     float64
	RespMaxMs     float64
	Gaps          []Gap
	Drops         int      // connections that failed
	Errors        []string `json:",omitempty"`
	QUIC          QUICStats
	hist          *hdrhistogram.Histogram
}

// Unanswered is how many requests never got a response.
func (s ConnStats) Unanswered() uint64 {
	got := s.Responses.Received - s.Responses.Duplicated
	if got >= s.Requests {
		return 0
	}
	return s.Requests - got
}

// MaxGapIn returns the longest gap of the given kind ("": any) that ended
// in [from, to). A gap belongs to the window it ended in, so one long gap
// is never counted for two back-to-back migrations.
func (s ConnStats) MaxGapIn(kind string, from, to time.Time) time.Duration {
	var m time.Duration
	for _, g := range s.Gaps {
		if kind != "" && g.Kind != kind {
			continue
		}
		if !g.End.Before(from) && g.End.Before(to) && g.Len > m {
			m = g.Len
		}
	}
	return m
}

// Clean says whether the connection saw nothing a migration must not
// cause, and if not, what.
func (s ConnStats) Clean() error {
	var errs []error
	if s.Drops > 0 || s.QUIC.Handshakes != 1 {
		errs = append(errs, fmt.Errorf("%d drops, %d handshakes", s.Drops, s.QUIC.Handshakes))
	}
	if u := s.Unanswered(); u > 0 || s.Responses.Duplicated > 0 || s.RequestErrors > 0 {
		errs = append(errs, fmt.Errorf("requests: %d unanswered, %d duplicated, %d failed", u, s.Responses.Duplicated, s.RequestErrors))
	}
	if s.ServerSeq.Duplicated > 0 || s.ServerSeq.Lost > 0 {
		errs = append(errs, fmt.Errorf("server response numbers: %d repeated, %d skipped", s.ServerSeq.Duplicated, s.ServerSeq.Lost))
	}
	if d := s.Download; d.Lost+d.Duplicated+d.Reordered > 0 || s.CorruptChunks > 0 || d.Received == 0 {
		errs = append(errs, fmt.Errorf("download: %d received, %d lost, %d duplicated, %d reordered, %d corrupt", d.Received, d.Lost, d.Duplicated, d.Reordered, s.CorruptChunks))
	}
	return errors.Join(errs...)
}

// Client runs Conns connections.
type Client struct {
	cfg   ClientConfig
	conns []*conn
}

// Dial opens every connection (each with its own UDP socket, like
// separate clients) and starts the traffic. It fails if any first
// handshake fails.
func Dial(ctx context.Context, cfg ClientConfig) (*Client, error) {
	cfg.defaults()
	addr, err := net.ResolveUDPAddr("udp4", cfg.Addr)
	if err != nil {
		return nil, err
	}
	cl := &Client{cfg: cfg}
	for i := 0; i < cfg.Conns; i++ {
		k := newConn(i, cfg, addr)
		if err := k.dial(ctx); err != nil {
			cl.Stop(ctx, 0)
			return nil, fmt.Errorf("connection %d: %w", i, err)
		}
		cl.conns = append(cl.conns, k)
		k.wg.Add(1)
		go k.run()
	}
	return cl, nil
}

// Stats returns a snapshot of every connection.
func (cl *Client) Stats() []ConnStats {
	out := make([]ConnStats, len(cl.conns))
	for i, k := range cl.conns {
		out[i] = k.snapshot()
	}
	return out
}

// Stop stops issuing requests, waits up to wait for the outstanding ones,
// closes every connection and returns the final stats.
func (cl *Client) Stop(ctx context.Context, wait time.Duration) []ConnStats {
	for _, k := range cl.conns {
		k.stopSending()
	}
	deadline := time.Now().Add(wait)
	for _, k := range cl.conns {
		k.waitRequests(ctx, deadline)
	}
	for _, k := range cl.conns {
		k.close()
	}
	return cl.Stats()
}

// Run dials, runs for d (or until ctx ends) and stops.
func Run(ctx context.Context, cfg ClientConfig, d time.Duration) ([]ConnStats, error) {
	cl, err := Dial(ctx, cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	return cl.Stop(context.Background(), 2*time.Second), nil
}

// conn is one client slot.
type conn struct {
	cfg   ClientConfig
	addr  net.Addr
	trace *counter
	qconf *quicgo.Config

	mu       sync.Mutex
	stats    ConnStats
	qc       *quicgo.Conn
	tr       *quicgo.Transport
	dlBase   uint64 // chunk numbers restart on a new connection; this keeps Download one sequence
	srvBase  uint64 // likewise for the server's response numbers
	lastResp time.Time
	lastDl   time.Time

	stop     chan struct{} // closed: no more requests
	stopOnce sync.Once
	closed   chan struct{} // closed: connection being torn down for good
	ran      chan struct{} // closed when run has returned: no request is issued after
	reqs     sync.WaitGroup
	wg       sync.WaitGroup
}

func newConn(i int, cfg ClientConfig, addr net.Addr) *conn {
	k := &conn{cfg: cfg, addr: addr, trace: &counter{}, stop: make(chan struct{}), closed: make(chan struct{}), ran: make(chan struct{})}
	k.stats.Conn = i
	k.stats.hist = hdrhistogram.New(1, int64(10*time.Minute/time.Microsecond), 3)
	k.qconf = baseConfig()
	k.qconf.Tracer = func(context.Context, bool, quicgo.ConnectionID) qlogwriter.Trace { return k.trace }
	return k
}

func (k *conn) dial(ctx context.Context) error {
	pc, err := k.cfg.ListenPacket()
	if err != nil {
		return err
	}
	tr := &quicgo.Transport{Conn: pc}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	qc, err := tr.Dial(dctx, k.addr, clientTLS(), k.qconf)
	if err != nil {
		tr.Close()
		pc.Close()
		return err
	}
	str, err := qc.OpenStreamSync(dctx)
	if err == nil {
		var b [RequestSize]byte
		Request{Kind: KindDownload, Seq: uint64(k.cfg.ChunkSize), ClientNs: time.Now().UnixNano()}.Marshal(b[:])
		_, err = str.Write(b[:])
	}
	if err != nil {
		qc.CloseWithError(1, "download stream")
		tr.Close()
		pc.Close()
		return err
	}
	now := time.Now()
	k.mu.Lock()
	k.qc, k.tr = qc, tr
	k.dlBase, k.srvBase = k.stats.Download.Next, k.stats.ServerSeq.Next
	if k.dlBase > 0 {
		k.dlBase--
	}
	if k.srvBase > 0 {
		k.srvBase--
	}
	k.lastResp, k.lastDl = now, now
	k.mu.Unlock()
	k.wg.Add(1)
	go k.readDownload(qc, str)
	if k.cfg.Datagrams {
		k.wg.Add(1)
		go k.readDatagrams(qc)
	}
	return nil
}

func (k *conn) errorf(format string, args ...any) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.stats.Errors) < 100 {
		k.stats.Errors = append(k.stats.Errors, time.Now().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
	}
}

func (k *conn) gap(kind string, last *time.Time, now time.Time) {
	if d := now.Sub(*last); d >= k.cfg.MinGap {
		k.stats.Gaps = append(k.stats.Gaps, Gap{Kind: kind, Start: *last, End: now, Len: d})
	}
	*last = now
}

// run issues a request every interval and, if the connection fails,
// dials a new one (unless NoReconnect).
func (k *conn) run() {
	defer k.wg.Done()
	defer close(k.ran)
	t := time.NewTicker(k.cfg.Interval)
	defer t.Stop()
	for {
		k.mu.Lock()
		qc := k.qc
		k.mu.Unlock()
		select {
		case <-k.stop:
			return
		case <-qc.Context().Done():
			select {
			case <-k.closed:
				return
			default:
			}
			k.mu.Lock()
			k.stats.Drops++
			k.mu.Unlock()
			k.errorf("connection failed: %v", context.Cause(qc.Context()))
			if k.cfg.NoReconnect {
				return
			}
			for k.redial() != nil {
				select {
				case <-k.stop:
					return
				case <-time.After(time.Second):
				}
			}
		case now := <-t.C:
			k.mu.Lock()
			k.stats.Requests++
			seq := k.stats.Requests
			if k.cfg.Datagrams {
				k.stats.DatagramsSent++
			}
			k.mu.Unlock()
			k.reqs.Add(1)
			go k.request(qc, seq, now)
			if k.cfg.Datagrams {
				// A full send queue loses the datagram, which is what
				// datagrams are for; the echo count shows it.
				_ = qc.SendDatagram(marshalDatagram(seq, now.UnixNano()))
			}
		}
	}
}

func (k *conn) redial() error {
	k.mu.Lock()
	tr := k.tr
	k.mu.Unlock()
	tr.Close()
	tr.Conn.Close()
	if err := k.dial(context.Background()); err != nil {
		k.errorf("redial: %v", err)
		return err
	}
	return nil
}

// request does one exchange on a stream of its own.
func (k *conn) request(qc *quicgo.Conn, seq uint64, sent time.Time) {
	defer k.reqs.Done()
	fail := func(what string, err error) {
		select {
		case <-k.closed:
			return // cut off by Stop: counted as unanswered, not as a failure
		default:
		}
		k.mu.Lock()
		k.stats.RequestErrors++
		k.mu.Unlock()
		k.errorf("request %d: %s: %v", seq, what, err)
	}
	ctx, cancel := context.WithTimeout(qc.Context(), MaxIdleTimeout)
	defer cancel()
	str, err := qc.OpenStreamSync(ctx)
	if err != nil {
		fail("open", err)
		return
	}
	_ = str.SetDeadline(time.Now().Add(MaxIdleTimeout))
	var b [RequestSize]byte
	Request{Kind: KindRequest, Seq: seq, ClientNs: sent.UnixNano()}.Marshal(b[:])
	if _, err := str.Write(b[:]); err != nil {
		fail("write", err)
		return
	}
	str.Close()
	r, err := ReadResponse(str)
	now := time.Now()
	if err != nil {
		fail("read", err)
		return
	}
	if r.Seq != seq || r.ClientNs != sent.UnixNano() {
		fail("answer", fmt.Errorf("response to request %d at %d on the stream of request %d", r.Seq, r.ClientNs, seq))
		return
	}
	k.mu.Lock()
	k.stats.Responses.See(r.Seq)
	k.stats.ServerSeq.See(k.srvBase + r.ServerSeq)
	_ = k.stats.hist.RecordValue(now.Sub(sent).Microseconds())
	k.gap(GapResponse, &k.lastResp, now)
	k.mu.Unlock()
	if k.cfg.OnResponse != nil {
		k.cfg.OnResponse(k.stats.Conn, seq, sent, now.Sub(sent))
	}
}

func (k *conn) readDownload(qc *quicgo.Conn, str *quicgo.Stream) {
	defer k.wg.Done()
	var buf []byte
	for {
		var (
			c   Chunk
			err error
		)
		c, buf, err = ReadChunk(str, buf)
		now := time.Now()
		if err != nil && !errors.Is(err, ErrCorruptChunk) {
			select {
			case <-k.closed:
			default:
				if qc.Context().Err() == nil {
					// The stream broke but not the connection: the
					// download cannot resume, so the connection is
					// useless to the measurement.
					k.errorf("download: %v", err)
					qc.CloseWithError(2, "download stream failed")
				}
			}
			return
		}
		k.mu.Lock()
		if err != nil {
			k.stats.CorruptChunks++
		}
		k.stats.Download.See(k.dlBase + c.Seq)
		k.stats.DownloadBytes += uint64(ChunkHeaderSize + len(c.Payload))
		k.gap(GapChunk, &k.lastDl, now)
		k.mu.Unlock()
	}
}

func (k *conn) readDatagrams(qc *quicgo.Conn) {
	defer k.wg.Done()
	for {
		b, err := qc.ReceiveDatagram(qc.Context())
		if err != nil {
			return
		}
		if seq, _, ok := parseDatagram(b); ok {
			k.mu.Lock()
			k.stats.Datagrams.See(seq)
			k.mu.Unlock()
		}
	}
}

func (k *conn) stopSending() {
	k.stopOnce.Do(func() { close(k.stop) })
}

// waitRequests waits for the outstanding requests until deadline.
func (k *conn) waitRequests(ctx context.Context, deadline time.Time) {
	done := make(chan struct{})
	go func() { <-k.ran; k.reqs.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	case <-time.After(time.Until(deadline)):
	}
}

func (k *conn) close() {
	select {
	case <-k.closed:
		return
	default:
		close(k.closed)
	}
	k.stopSending()
	k.mu.Lock()
	qc, tr := k.qc, k.tr
	k.mu.Unlock()
	if qc != nil {
		qc.CloseWithError(0, "done")
	}
	if tr != nil {
		tr.Close()
		tr.Conn.Close()
	}
	k.wg.Wait()
	k.reqs.Wait()
}

func (k *conn) snapshot() ConnStats {
	k.mu.Lock()
	defer k.mu.Unlock()
	s := k.stats
	s.Gaps = append([]Gap(nil), k.stats.Gaps...)
	s.Errors = append([]string(nil), k.stats.Errors...)
	s.QUIC = k.trace.snapshot()
	if h := k.stats.hist; h.TotalCount() > 0 {
		s.RespP50Ms = float64(h.ValueAtQuantile(50)) / 1000
		s.RespP99Ms = float64(h.ValueAtQuantile(99)) / 1000
		s.RespMaxMs = float64(h.Max()) / 1000
	}
	s.hist = nil
	return s
}
