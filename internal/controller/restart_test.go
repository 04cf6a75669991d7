package controller_test

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/controller"
	"github.com/containerflow/containerflow/internal/dataplane"
	"github.com/containerflow/containerflow/internal/nsrun"
	"github.com/containerflow/containerflow/internal/testbed"
)

// Restarting the controller while traffic flows loses nothing: a paced UDP
// stream arrives complete and an established TCP connection keeps
// exchanging data, across several restarts. The pinned data plane keeps
// forwarding while no controller runs, and the new one finds its stored
// state already in place, so it writes nothing.
func TestRestartWithTrafficLosesNothing(t *testing.T) {
	e := newEnv(t, nil)
	hostB := testbed.Nodes[1]
	e.echoServer(testbed.HostB, hostB.DataIP.String()+":7000", "b")
	conn, err := e.tb.Dial(testbed.Client, "tcp4", hostB.DataIP.String()+":7000", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	recv := e.listenUDP(testbed.HostB, netip.AddrPortFrom(hostB.DataIP, 9200))
	_ = recv.SetReadBuffer(4 << 20)
	send, err := e.tb.Dial(testbed.Client, "udp4", netip.AddrPortFrom(hostB.DataIP, 9200).String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer send.Close()

	const datagrams = 3000
	var (
		wg       sync.WaitGroup
		stop     atomic.Bool
		trips    atomic.Int64
		tcpErr   error
		got      = map[uint32]bool{}
		sendDone = make(chan struct{})
	)
	wg.Add(3)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			if err := roundTrip(conn, fmt.Sprintf("%d %064d\n", i, i), "b"); err != nil {
				tcpErr = err
				return
			}
			trips.Add(1)
		}
	}()
	go func() {
		defer wg.Done()
		buf := make([]byte, 64)
		for len(got) < datagrams {
			_ = recv.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, err := recv.Read(buf)
			if err != nil {
				return
			}
			if n >= 4 {
				got[binary.BigEndian.Uint32(buf)] = true
			}
		}
	}()
	go func() {
		defer wg.Done()
		defer close(sendDone)
		b := make([]byte, 16)
		for i := uint32(0); i < datagrams; i++ {
			binary.BigEndian.PutUint32(b, i)
			_, _ = send.Write(b)
			time.Sleep(500 * time.Microsecond)
		}
	}()
	restarts := 0
	for ; restarts < 3; restarts++ {
		time.Sleep(150 * time.Millisecond)
		e.restart()
	}
	<-sendDone
	time.Sleep(100 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if tcpErr != nil {
		t.Fatalf("TCP broke across %d restarts after %d round trips: %v", restarts, trips.Load(), tcpErr)
	}
	if len(got) != datagrams {
		t.Fatalf("UDP: %d of %d datagrams arrived across %d restarts", len(got), datagrams, restarts)
	}
	if h, err := e.c.Health(bg()); err != nil || h.Status != "ok" {
		t.Fatalf("health after restarts: %+v %v", h, err)
	}
	t.Logf("%d restarts: %d/%d datagrams, %d TCP round trips", restarts, len(got), datagrams, trips.Load())
}

// The desired state is stored and re-applied on start: entries changed
// behind the controller's back are put back, stray ones removed, and a
// switch whose pins were lost (a reboot) is rebuilt from the store. The
// configuration's initial entries apply only to a first start and to
// /reinitialize.
func TestDesiredStatePersistsAndIsReapplied(t *testing.T) {
	e := newEnv(t, nil)
	ip := netip.MustParseAddr("198.18.0.9")
	if err := e.c.MoveAddress(bg(), ip, "hostA", nil); err != nil {
		t.Fatal(err)
	}
	if err := e.c.SetService(bg(), controller.ServiceSpec{ServiceRef: controller.ServiceRef{VIP: "198.18.0.40", Port: 80, Proto: "tcp"},
		Members: []controller.MemberSpec{{Addr: ip.String()}}}); err != nil {
		t.Fatal(err)
	}
	want := e.tables()

	// Behind the controller's back, while it is down.
	e.stop()
	dp, err := dataplane.Load(dataplane.Options{PinPath: e.tb.PinPath(), Netns: nsrun.Path(e.tb.Prefix + "-" + testbed.Switch)})
	if err != nil {
		t.Fatal(err)
	}
	if err := dp.MoveAddress(ip, 2, nil); err != nil {
		t.Fatal(err)
	}
	if err := dp.MoveAddress(netip.MustParseAddr("198.18.0.77"), 1, nil); err != nil {
		t.Fatal(err)
	}
	_ = dp.Close()
	e.cfg.Addresses = append(e.cfg.Addresses, controller.AddressConfig{IP: "198.18.0.78",
		AddressSpec: controller.AddressSpec{Forward: &controller.ForwardSpec{Port: "hostA"}}})
	e.start()
	if got := e.tables(); got != want {
		t.Fatalf("after restart:\n%s\nwant the stored state\n%s", got, want)
	}

	// A lost switch (pins and attachments gone, as after a reboot) is
	// rebuilt from the store.
	e.stop()
	dp, err = dataplane.Load(dataplane.Options{PinPath: e.tb.PinPath(), Netns: nsrun.Path(e.tb.Prefix + "-" + testbed.Switch)})
	if err != nil {
		t.Fatal(err)
	}
	if err := dp.Destroy(); err != nil {
		t.Fatal(err)
	}
	l := e.listenUDP(testbed.HostB, netip.AddrPortFrom(testbed.Nodes[1].DataIP, 9300))
	if got := e.udpCount(netip.AddrPortFrom(testbed.Nodes[1].DataIP, 9300), 5, l); got[0] != 0 {
		t.Fatalf("traffic without a switch: %d", got[0])
	}
	e.start()
	if got := e.tables(); got != want {
		t.Fatalf("after rebuild:\n%s\nwant\n%s", got, want)
	}
	// The client's ARP entry for hostB went unanswered while there was no
	// switch; its next retry (1 s) resolves it through the rebuilt one.
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := e.udpCount(netip.AddrPortFrom(testbed.Nodes[1].DataIP, 9300), 20, l)
		if got[0] == 20 {
			break
		}
		if time.Now().After(deadline) {
			cs, _ := e.c.Counters(bg())
			t.Fatalf("traffic after rebuild: %d/20, counters %+v", got[0], cs)
		}
	}
	// The new configured entry arrives with /reinitialize only.
	if _, err := e.c.Address(bg(), netip.MustParseAddr("198.18.0.78")); err == nil {
		t.Fatal("a configuration change overrode the stored state")
	}
	e.mustCall(200, "POST", "/reinitialize", "")
	if _, err := e.c.Address(bg(), netip.MustParseAddr("198.18.0.78")); err != nil {
		t.Fatalf("reinitialize: %v", err)
	}
	if _, err := e.c.Address(bg(), ip); err == nil {
		t.Fatal("reinitialize kept an entry that is not in the configuration")
	}
}
