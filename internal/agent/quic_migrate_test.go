package agent

import (
	"context"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/image/imagetest"
	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/workload/quic"
)

// A QUIC server (quic-go, in a container from an image) migrates
// A -> B -> A under 4 connections doing requests every 10 ms, a download
// stream and datagrams. QUIC rides on one unconnected UDP socket, so
// whatever reaches the container while it is frozen is lost on the wire
// and QUIC has to retransmit it: the connections must survive (one
// handshake each), no request may be lost or answered twice and the
// download must go on without a hole. The outage and QUIC's own loss and
// PTO counts are logged per migration.
func TestQUICServerMigrates(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	archive := imagetest.BuildBusybox(t, t.TempDir(), map[string]string{"/opt/app/cflow": imagetest.StaticCflow(t)})
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.clients[testbed.HostA].LoadImage(ctx, f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("198.18.0.13")
	e.runOn(testbed.HostA, ContainerSpec{Name: "quic", IP: ip, Image: imagetest.BusyboxRef,
		Args: []string{"/opt/app/cflow", "workload", "quic-server", "--listen", ":4433", "--interval", "10ms"}})

	// quic-go retransmits its Initial until the server is up, within
	// Dial's own timeout: no retry loop needed.
	cl, err := quic.Dial(ctx, quic.ClientConfig{
		Addr: ip.String() + ":4433", Conns: 4, Interval: 10 * time.Millisecond, MinGap: 30 * time.Millisecond, Datagrams: true,
		ListenPacket: func() (c net.PacketConn, err error) {
			err = e.tb.Do(testbed.Client, func() error { c, err = net.ListenPacket("udp4", ":0"); return err })
			return c, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			cl.Stop(ctx, 0)
		}
	}()
	time.Sleep(time.Second)

	type move struct {
		from, to   string
		start, end time.Time
		readyMs    float64
	}
	var moves []move
	from := testbed.HostA
	for _, to := range []string{testbed.HostB, testbed.HostA} {
		start := time.Now()
		res, err := e.clients[from].Migrate(ctx, "quic", MigrateRequest{To: to})
		if err != nil {
			t.Fatalf("migrate %s->%s: %v", from, to, err)
		}
		// Long enough for QUIC to retransmit what the freeze cost and
		// for every request of the window to be answered.
		time.Sleep(2 * time.Second)
		moves = append(moves, move{from: from, to: to, start: start, end: time.Now(), readyMs: res.Record.TimeToReadyMs})
		from = to
	}
	stats := cl.Stop(ctx, 5*time.Second)
	stopped = true

	for _, m := range moves {
		var maxResp, maxChunk time.Duration
		lost, ptos := 0, 0
		for _, s := range stats {
			maxResp = max(maxResp, s.MaxGapIn(quic.GapResponse, m.start, m.end))
			maxChunk = max(maxChunk, s.MaxGapIn(quic.GapChunk, m.start, m.end))
			lost += s.QUIC.LostIn(m.start, m.end)
			ptos += s.QUIC.PTOsIn(m.start, m.end)
		}
		t.Logf("%s->%s: time to ready %.0f ms; longest silence: responses %.0f ms, download %.0f ms; client QUIC: %d packets declared lost, %d PTOs",
			m.from, m.to, m.readyMs, float64(maxResp)/1e6, float64(maxChunk)/1e6, lost, ptos)
		if maxResp == 0 && maxChunk == 0 {
			t.Errorf("%s->%s: no silence at all around a migration: the windows are wrong", m.from, m.to)
		}
	}
	for _, s := range stats {
		q := s.QUIC
		t.Logf("conn %d: %d requests (p50 %.2f ms, p99 %.2f ms, max %.0f ms), %d chunks, datagrams %d/%d echoed; QUIC: %d handshakes, sent %d, received %d, lost %d (%d spurious), PTOs %d",
			s.Conn, s.Requests, s.RespP50Ms, s.RespP99Ms, s.RespMaxMs, s.Download.Received, s.Datagrams.Received, s.DatagramsSent,
			q.Handshakes, q.PacketsSent, q.PacketsReceived, q.PacketsLost, q.SpuriousLosses, q.PTOs)
		if err := s.Clean(); err != nil {
			t.Errorf("conn %d: %v; errors: %v", s.Conn, err, s.Errors)
		}
		if s.Requests < 300 {
			t.Errorf("conn %d: only %d requests", s.Conn, s.Requests)
		}
	}
}
