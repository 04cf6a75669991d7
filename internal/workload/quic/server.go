package quic

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	quicgo "github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlogwriter"
)

// Timeouts shared by both sides. A migration freezes the server for a few
// hundred milliseconds (seconds, if something goes wrong): the idle
// timeout must outlast that by far, or quic-go on the client would close
// a connection the restored server still holds.
const (
	MaxIdleTimeout  = 30 * time.Second
	KeepAlivePeriod = 5 * time.Second
)

// maxStreams lets a client have this many request streams open at once:
// requests keep being issued every interval during a freeze, and a client
// waiting for stream credit would add its own stall to the one measured.
const maxStreams = 1 << 16

func baseConfig() *quicgo.Config {
	return &quicgo.Config{
		MaxIdleTimeout:        MaxIdleTimeout,
		KeepAlivePeriod:       KeepAlivePeriod,
		MaxIncomingStreams:    maxStreams,
		MaxIncomingUniStreams: -1,
		EnableDatagrams:       true,
	}
}

// DefaultChunkSize is the download payload per chunk when the client asks
// for none.
const DefaultChunkSize = 1024

// Server is the in-container side.
type Server struct {
	Interval time.Duration // between download chunks
	Log      *slog.Logger
	conns    atomic.Int64
}

// Serve runs on pc until ctx ends. pc is one unconnected UDP socket:
// CRIU checkpoints it, with whatever is queued on it, like any other.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn) error {
	tlsConf, err := serverTLS()
	if err != nil {
		return fmt.Errorf("quic server: certificate: %w", err)
	}
	tr := &quicgo.Transport{Conn: pc}
	defer tr.Close()
	conf := baseConfig()
	conf.Tracer = func(context.Context, bool, quicgo.ConnectionID) qlogwriter.Trace { return &counter{} }
	ln, err := tr.Listen(tlsConf, conf)
	if err != nil {
		return fmt.Errorf("quic server: %w", err)
	}
	defer ln.Close()
	for {
		c, err := ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go s.handle(ctx, c)
	}
}

// handle serves one connection: every stream the client opens is either a
// request or the download, and every datagram is echoed.
func (s *Server) handle(ctx context.Context, c *quicgo.Conn) {
	n := s.conns.Add(1)
	defer s.conns.Add(-1)
	if s.Log != nil {
		s.Log.Info("quic connection", "remote", c.RemoteAddr(), "open", n)
	}
	var respSeq atomic.Uint64
	go s.echoDatagrams(c)
	for {
		str, err := c.AcceptStream(ctx)
		if err != nil {
			if s.Log != nil {
				attrs := []any{"remote", c.RemoteAddr(), "err", err}
				if tr, ok := c.QlogTrace().(*counter); ok {
					q := tr.snapshot()
					attrs = append(attrs, "handshakes", q.Handshakes, "sent", q.PacketsSent, "received", q.PacketsReceived, "lost", q.PacketsLost, "ptos", q.PTOs)
				}
				s.Log.Info("quic connection ended", attrs...)
			}
			return
		}
		go s.stream(c, str, &respSeq)
	}
}

func (s *Server) stream(c *quicgo.Conn, str *quicgo.Stream, respSeq *atomic.Uint64) {
	_ = str.SetReadDeadline(time.Now().Add(MaxIdleTimeout))
	r, err := ReadRequest(str)
	if err != nil {
		str.CancelRead(1)
		str.CancelWrite(1)
		return
	}
	_ = str.SetReadDeadline(time.Time{})
	switch r.Kind {
	case KindRequest:
		var b [ResponseSize]byte
		Response{Seq: r.Seq, ClientNs: r.ClientNs, ServerSeq: respSeq.Add(1)}.Marshal(b[:])
		if _, err := str.Write(b[:]); err != nil {
			return
		}
		str.Close()
	case KindDownload:
		size := int(r.Seq)
		if size <= 0 || size > MaxChunkPayload {
			size = DefaultChunkSize
		}
		s.download(c, str, size)
	}
}

// download sends chunks until the stream or the connection ends. Ticks
// missed while a write blocked are skipped, not caught up on: the chunk
// numbers stay consecutive either way, and a burst after a freeze would
// only measure the burst.
func (s *Server) download(c *quicgo.Conn, str *quicgo.Stream, size int) {
	t := time.NewTicker(s.Interval)
	defer t.Stop()
	var buf []byte
	for seq := uint64(1); ; seq++ {
		select {
		case <-c.Context().Done():
			return
		case now := <-t.C:
			buf = MarshalChunk(buf, seq, now.UnixNano(), size)
			if _, err := str.Write(buf); err != nil {
				return
			}
		}
	}
}

func (s *Server) echoDatagrams(c *quicgo.Conn) {
	for {
		b, err := c.ReceiveDatagram(c.Context())
		if err != nil {
			return
		}
		// Lost, like any datagram, if the send queue is full.
		_ = c.SendDatagram(b)
	}
}

// ListenAndServe runs the server on a UDP address (used by `cflow workload
// quic-server` inside a container).
func ListenAndServe(ctx context.Context, addr string, interval time.Duration, log *slog.Logger) error {
	ua, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return fmt.Errorf("quic server: %w", err)
	}
	pc, err := net.ListenUDP("udp4", ua)
	if err != nil {
		return fmt.Errorf("quic server: %w", err)
	}
	defer pc.Close()
	if interval <= 0 {
		return errors.New("quic server: interval must be positive")
	}
	s := &Server{Interval: interval, Log: log}
	return s.Serve(ctx, pc)
}
