package agent

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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
	info := e.runOn(testbed.HostA, ContainerSpec{Name: "quic", IP: ip, Image: imagetest.BusyboxRef,
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
	opts := udpSockOpts(t, info.Pid, 4433)
	t.Logf("server socket options before the migrations: %v", opts)

	type move struct {
		from, to   string
		start, end time.Time
		readyMs    float64
		held       int64 // datagrams held during the freeze and released
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
		if in, err := e.clients[to].Get(ctx, "quic"); err != nil {
			t.Fatal(err)
		} else if got := udpSockOpts(t, in.Pid, 4433); !maps.Equal(got, opts) {
			// Not fatal: what matters is that QUIC survives, checked below.
			t.Logf("%s->%s: server socket options changed: %v, were %v", from, to, got, opts)
		}
		moves = append(moves, move{from: from, to: to, start: start, end: time.Now(), readyMs: res.Record.TimeToReadyMs, held: res.Record.HandoffDatagrams})
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
		t.Logf("%s->%s: time to ready %.0f ms; %d datagrams held and released; longest silence: responses %.0f ms, download %.0f ms; client QUIC: %d packets declared lost, %d PTOs",
			m.from, m.to, m.readyMs, m.held, float64(maxResp)/1e6, float64(maxChunk)/1e6, lost, ptos)
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

// udpSockOpts reads, through a pidfd, the socket options quic-go sets on
// the UDP socket of pid bound to port: ECN reception, packet info (the
// address a datagram came to), don't-fragment, buffer sizes.
func udpSockOpts(t *testing.T, pid, port int) map[string]int {
	t.Helper()
	pfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", pid, err)
	}
	defer unix.Close(pfd)
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		n, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		fd, err := unix.PidfdGetfd(pfd, n, 0)
		if err != nil {
			continue
		}
		typ, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
		sa, _ := unix.Getsockname(fd)
		if in, ok := sa.(*unix.SockaddrInet4); !ok || typ != unix.SOCK_DGRAM || in.Port != port {
			unix.Close(fd)
			continue
		}
		opts := map[string]int{}
		for name, o := range map[string][2]int{
			"IP_RECVTOS": {unix.IPPROTO_IP, unix.IP_RECVTOS}, "IP_PKTINFO": {unix.IPPROTO_IP, unix.IP_PKTINFO},
			"IP_MTU_DISCOVER": {unix.IPPROTO_IP, unix.IP_MTU_DISCOVER},
			"SO_RCVBUF":       {unix.SOL_SOCKET, unix.SO_RCVBUF}, "SO_SNDBUF": {unix.SOL_SOCKET, unix.SO_SNDBUF},
		} {
			v, err := unix.GetsockoptInt(fd, o[0], o[1])
			if err != nil {
				v = -1
			}
			opts[name] = v
		}
		unix.Close(fd)
		return opts
	}
	t.Fatalf("no UDP socket on port %d in process %d", port, pid)
	return nil
}
