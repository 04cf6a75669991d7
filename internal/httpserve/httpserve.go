// Package httpserve builds the HTTP servers of the agent and the switch
// controller the same way: timeouts against clients that hold a connection
// without finishing a request, bounded headers and JSON bodies, and a
// graceful shutdown that lets requests in flight finish up to a bound.
//
// There is deliberately no overall ReadTimeout or WriteTimeout: a
// migration's image stream, an image upload and `logs?follow=1` last as
// long as they last. Those handlers bound themselves instead (IdleBody,
// JSONBody, Draining).
package httpserve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

const (
	// ReadHeaderTimeout: a client that has not sent a whole request head
	// by then (slowloris) is disconnected.
	ReadHeaderTimeout = 10 * time.Second
	// IdleTimeout closes keep-alive connections nobody uses.
	IdleTimeout = 120 * time.Second
	// MaxHeaderBytes: the APIs need a bearer token and a few short
	// headers; the default 1 MiB only helps an attacker.
	MaxHeaderBytes = 64 << 10
	// JSONLimit bounds a JSON request body: the largest, a container spec
	// with its environment, is a few KiB.
	JSONLimit = 1 << 20
	// JSONReadTimeout bounds the time to send a JSON body once the head is
	// in: small bodies that trickle in are the body-phase slowloris.
	JSONReadTimeout = 30 * time.Second
)

// New returns a server for h with the timeouts and limits above. Its
// requests' contexts carry the connection (Conn) and the shutdown signal
// (Draining).
func New(h http.Handler) *http.Server {
	d := &drain{ch: make(chan struct{})}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		BaseContext: func(net.Listener) context.Context {
			return context.WithValue(context.Background(), drainKey{}, d.ch)
		},
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
	}
	srv.RegisterOnShutdown(d.close)
	return srv
}

type drain struct {
	once sync.Once
	ch   chan struct{}
}

func (d *drain) close() { d.once.Do(func() { close(d.ch) }) }

type (
	drainKey struct{}
	connKey  struct{}
)

// Draining is closed once the server that serves the request (built by
// New) begins to shut down; nil (never ready) otherwise. Handlers that
// would otherwise run forever (a log follower) end on it, so that they do
// not hold the shutdown to its bound.
func Draining(ctx context.Context) <-chan struct{} {
	ch, _ := ctx.Value(drainKey{}).(chan struct{})
	return ch
}

// Conn is the connection a request came on (servers built by New), for
// identifying the peer of a unix socket; nil otherwise.
func Conn(ctx context.Context) net.Conn {
	c, _ := ctx.Value(connKey{}).(net.Conn)
	return c
}

// Serve serves srv on every listener until ctx ends, then shuts down: the
// listeners close at once, requests in flight get up to grace to finish,
// and whatever still runs then is cut (its connection closed, its context
// cancelled) and reported in the error.
func Serve(ctx context.Context, srv *http.Server, grace time.Duration, what string, ls ...net.Listener) error {
	if len(ls) == 0 {
		return errors.New("httpserve: no listener")
	}
	errc := make(chan error, len(ls))
	for _, l := range ls {
		go func() { errc <- srv.Serve(l) }()
	}
	select {
	case err := <-errc:
		_ = srv.Close()
		return err
	case <-ctx.Done():
	}
	slog.Info(what+" shutting down: no new connections, waiting for requests in flight", "grace", grace)
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("%s: requests still running after %s were cut: %w", what, grace, err)
	}
	slog.Info(what + " stopped")
	return nil
}

// JSONBody bounds r's body to JSONLimit bytes and JSONReadTimeout: reading
// past the limit fails with *http.MaxBytesError (answer 413, see
// IsTooLarge), a body that trickles fails on the read deadline.
func JSONBody(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, JSONLimit)
	// Not supported by every ResponseWriter (httptest's recorder): then
	// only the size is bounded.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(JSONReadTimeout))
}

// IsTooLarge says whether err is a body read past its MaxBytesReader.
func IsTooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

// IdleBody makes a long body (an image stream, an upload) fail once the
// client sends nothing for idle, without bounding its total time: each
// read moves the connection's read deadline.
func IdleBody(w http.ResponseWriter, r *http.Request, idle time.Duration) {
	r.Body = &idleBody{ReadCloser: r.Body, rc: http.NewResponseController(w), idle: idle}
}

type idleBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
	last time.Time
}

func (b *idleBody) Read(p []byte) (int, error) {
	// Moving the deadline is a syscall-free timer reset, but not free:
	// once a second is plenty at this granularity.
	if now := time.Now(); now.Sub(b.last) > time.Second {
		_ = b.rc.SetReadDeadline(now.Add(b.idle))
		b.last = now
	}
	return b.ReadCloser.Read(p)
}
