package tlsbatch

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net"
	"sync/atomic"
	"testing"

	"github.com/containerflow/containerflow/internal/pki"
)

// countingConn counts the writes that reach the socket.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// A 64 KiB write is four records and one send; what crosses is what was
// written, both ways, with reads and writes running together.
func TestWriteIsOneSend(t *testing.T) {
	dir := t.TempDir()
	if err := pki.InitCA(dir); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"server", "client"} {
		if _, _, err := pki.Issue(dir, n, []string{"127.0.0.1"}); err != nil {
			t.Fatal(err)
		}
	}
	srvID, _ := pki.Load(dir, "server")
	cliID, _ := pki.Load(dir, "client")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srvID.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const total = 8 << 20
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		// Talk back while the client writes: its reads run beside them.
		go io.Copy(c, io.LimitReader(rand.Reader, 1<<20)) //nolint:errcheck
		b, _ := io.ReadAll(io.LimitReader(c, total))
		got <- b
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cc := &countingConn{Conn: raw}
	c, err := Client(context.Background(), cc, cliID.ClientConfig("server"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if v := c.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Fatalf("version %x", v)
	}
	back := make(chan int64, 1)
	go func() { n, _ := io.Copy(io.Discard, c); back <- n }()
	want := make([]byte, total)
	rand.Read(want)
	before := cc.writes.Load()
	for off := 0; off < total; off += 64 << 10 {
		if _, err := c.Write(want[off : off+64<<10]); err != nil {
			t.Fatal(err)
		}
	}
	if sends, writes := cc.writes.Load()-before, int64(total/(64<<10)); sends != writes {
		t.Errorf("%d writes of 64 KiB went out in %d sends", writes, sends)
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("received %d bytes, not what was sent", len(b))
	}
	c.Close()
	if n := <-back; n != 1<<20 {
		t.Errorf("read %d of the server's bytes", n)
	}
}
