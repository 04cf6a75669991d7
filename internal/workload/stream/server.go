package stream

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"time"
)

// Server is the in-container side.
type Server struct {
	Interval time.Duration // between the server's own records
	Log      *slog.Logger
	errors   atomic.Int64
}

// Serve accepts connections until ctx ends.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	go func() { <-ctx.Done(); l.Close() }()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go s.handle(ctx, c)
	}
}

// handle echoes the client's records and interleaves its own. One writer
// goroutine owns the socket's write side so records never interleave.
func (s *Server) handle(ctx context.Context, c net.Conn) {
	defer c.Close()
	out := make(chan Record, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, RecordSize)
		var check SeqCheck
		for {
			r, err := ReadRecord(c, buf)
			if err != nil {
				if err != io.EOF && s.Log != nil {
					s.Log.Info("stream read", "remote", c.RemoteAddr(), "err", err)
				}
				return
			}
			check.See(r.Seq)
			if check.Lost+check.Duplicated > 0 {
				s.errors.Add(1)
				if s.Log != nil {
					s.Log.Error("client sequence broken", "remote", c.RemoteAddr(), "got", r.Seq, "lost", check.Lost, "dup", check.Duplicated)
				}
				return // closing the connection makes the break visible to the client
			}
			r.Kind = KindEcho
			select {
			case out <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	tick := time.NewTicker(s.Interval)
	defer tick.Stop()
	buf := make([]byte, RecordSize)
	var seq uint64
	for {
		var r Record
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case r = <-out:
		case t := <-tick.C:
			seq++
			r = Record{Kind: KindServer, Seq: seq, SentNs: t.UnixNano()}
		}
		r.Marshal(buf)
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}

// ListenAndServe runs the server on addr (used by `cflow workload
// stream-server` inside a container).
func ListenAndServe(ctx context.Context, addr string, interval time.Duration, log *slog.Logger) error {
	l, err := net.Listen("tcp4", addr)
	if err != nil {
		return fmt.Errorf("stream server: %w", err)
	}
	s := &Server{Interval: interval, Log: log}
	return s.Serve(ctx, l)
}
