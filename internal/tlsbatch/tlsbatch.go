// Package tlsbatch is a TLS client connection that sends each Write in
// one go. crypto/tls writes every record (16 KiB at most) with its own
// write(2), so a 64 KiB write of the image stream costs four trips down
// the TCP stack, where the same write in clear costs one; between network
// namespaces (veth) each trip also carries the receiver's side of the
// stack. Measured on the agents' image stream, those extra sends were
// about as costly as the encryption itself.
package tlsbatch

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
)

// Client runs the TLS handshake on raw as a client of cfg and returns the
// connection; each of its Writes leaves in one write to raw.
func Client(ctx context.Context, raw net.Conn, cfg *tls.Config) (*Conn, error) {
	b := &batcher{Conn: raw}
	tc := tls.Client(b, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	return &Conn{Conn: tc, b: b}, nil
}

// Conn is a TLS connection (ConnectionState and the rest are tls.Conn's)
// whose Writes are batched.
type Conn struct {
	*tls.Conn
	b  *batcher
	mu sync.Mutex // one Write at a time owns the batch
}

// Write encrypts p into as many records as it takes and sends them at once.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.b.hold(true)
	n, err := c.Conn.Write(p)
	if ferr := c.b.hold(false); err == nil {
		err = ferr
	}
	return n, err
}

// batcher sits under the TLS layer: while held it keeps what TLS writes
// (Conn.Write's records, or a record TLS sends on its own meanwhile, such
// as a key update while reading) and sends it in order when let go.
type batcher struct {
	net.Conn
	mu   sync.Mutex
	held bool
	buf  []byte
}

func (b *batcher) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.held {
		b.buf = append(b.buf, p...)
		return len(p), nil
	}
	return b.Conn.Write(p)
}

// hold starts keeping writes back, or stops and sends what was kept.
func (b *batcher) hold(on bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.held = on
	if on {
		return nil
	}
	return b.flushLocked()
}

func (b *batcher) flushLocked() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.Conn.Write(b.buf)
	if cap(b.buf) > 1<<20 {
		b.buf = nil // one large write is no reason to keep its buffer
	} else {
		b.buf = b.buf[:0]
	}
	return err
}
