package quic

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/testbed/tbtest"
)

func TestWireRoundTrip(t *testing.T) {
	var b [RequestSize]byte
	in := Request{Kind: KindRequest, Seq: 1<<40 + 3, ClientNs: 123456789}
	in.Marshal(b[:])
	if out, err := ReadRequest(bytes.NewReader(b[:])); err != nil || out != in {
		t.Fatalf("request: %+v %v", out, err)
	}
	var rb [ResponseSize]byte
	rin := Response{Seq: 7, ClientNs: -5, ServerSeq: 9}
	rin.Marshal(rb[:])
	if out, err := ReadResponse(bytes.NewReader(rb[:])); err != nil || out != rin {
		t.Fatalf("response: %+v %v", out, err)
	}
	if _, err := ReadResponse(bytes.NewReader(b[:8])); err == nil {
		t.Fatal("a short response was accepted")
	}
}

func TestChunkChecksum(t *testing.T) {
	enc := append([]byte(nil), MarshalChunk(nil, 42, 99, 300)...)
	c, _, err := ReadChunk(bytes.NewReader(enc), nil)
	if err != nil || c.Seq != 42 || c.ServerNs != 99 || len(c.Payload) != 300 {
		t.Fatalf("chunk: %+v %v", c, err)
	}
	// A flipped bit anywhere but in the length is caught, and the reader
	// stays aligned on the next chunk.
	for _, off := range []int{9, 17, ChunkHeaderSize, len(enc) - 1} {
		bad := append([]byte(nil), enc...)
		bad[off] ^= 1
		next := MarshalChunk(nil, 43, 100, 10)
		rd := bytes.NewReader(append(bad, next...))
		if _, _, err := ReadChunk(rd, nil); !errors.Is(err, ErrCorruptChunk) {
			t.Errorf("bit %d flipped: %v", off, err)
		}
		if c, _, err := ReadChunk(rd, nil); err != nil || c.Seq != 43 {
			t.Errorf("after a corrupt chunk: %+v %v", c, err)
		}
	}
}

// The workload over the testbed, without a migration: every connection
// is clean and QUIC's counters are filled from its qlog events.
func TestWorkloadOverTestbed(t *testing.T) {
	tb := tbtest.Up(t, "q", testbed.Config{})
	spec, _ := testbed.Spec(testbed.HostA)
	var pc net.PacketConn
	if err := tb.Do(testbed.HostA, func() (err error) {
		pc, err = net.ListenPacket("udp4", spec.DataIP.String()+":4433")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := &Server{Interval: 5 * time.Millisecond}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, pc) }()

	cl, err := Dial(ctx, ClientConfig{
		Addr: spec.DataIP.String() + ":4433", Conns: 3, Interval: 5 * time.Millisecond, Datagrams: true,
		ListenPacket: func() (c net.PacketConn, err error) {
			err = tb.Do(testbed.Client, func() error { c, err = net.ListenPacket("udp4", ":0"); return err })
			return c, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	for _, s := range cl.Stop(ctx, 2*time.Second) {
		if err := s.Clean(); err != nil {
			t.Errorf("conn %d: %v", s.Conn, err)
		}
		q := s.QUIC
		if s.Requests < 100 || s.Download.Received < 100 || q.PacketsSent == 0 || q.PacketsReceived == 0 || s.Datagrams.Received == 0 {
			t.Errorf("conn %d: too little traffic: %+v", s.Conn, s)
		}
		t.Logf("conn %d: %d requests, p50 %.2f ms, p99 %.2f ms, %d chunks, %d/%d datagrams echoed, quic sent %d received %d lost %d PTOs %d",
			s.Conn, s.Requests, s.RespP50Ms, s.RespP99Ms, s.Download.Received, s.Datagrams.Received, s.DatagramsSent, q.PacketsSent, q.PacketsReceived, q.PacketsLost, q.PTOs)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	pc.Close()
}
