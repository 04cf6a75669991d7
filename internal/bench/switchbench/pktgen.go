package switchbench

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/ipv4"

	"github.com/containerflow/containerflow/internal/testbed"
)

// batchSize is the number of datagrams per sendmmsg/recvmmsg call.
const batchSize = 64

// sendFlood sends payload-byte UDP datagrams from node to dst as fast as
// one thread can (sendmmsg in batches) until the deadline, and returns how
// many the kernel accepted.
func sendFlood(tb *testbed.Testbed, node string, dst netip.AddrPort, payload int, until time.Time) (uint64, error) {
	var conn *net.UDPConn
	if err := tb.Do(node, func() (err error) {
		conn, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(dst))
		return err
	}); err != nil {
		return 0, fmt.Errorf("sender on %s: %w", node, err)
	}
	defer conn.Close()
	_ = conn.SetWriteBuffer(4 << 20)
	pc := ipv4.NewPacketConn(conn)
	msgs := make([]ipv4.Message, batchSize)
	buf := make([]byte, payload)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{buf}
	}
	var sent uint64
	for n := 0; ; n++ {
		if n%16 == 0 && time.Now().After(until) {
			return sent, nil
		}
		k, err := pc.WriteBatch(msgs, 0)
		if err != nil {
			// A full queue (ENOBUFS) or an ICMP error from an earlier
			// datagram (ECONNREFUSED) is part of flooding, not a failure.
			continue
		}
		sent += uint64(k)
	}
}

// receiver counts datagrams at a UDP socket on a node (recvmmsg), until
// stopped.
type receiver struct {
	conn  *net.UDPConn
	count chan uint64
}

func startReceiver(tb *testbed.Testbed, node string, at netip.AddrPort) (*receiver, error) {
	var conn *net.UDPConn
	if err := tb.Do(node, func() (err error) {
		conn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(at))
		return err
	}); err != nil {
		return nil, fmt.Errorf("receiver on %s: %w", node, err)
	}
	_ = conn.SetReadBuffer(8 << 20)
	r := &receiver{conn: conn, count: make(chan uint64, 1)}
	go func() {
		pc := ipv4.NewPacketConn(conn)
		msgs := make([]ipv4.Message, batchSize)
		for i := range msgs {
			msgs[i].Buffers = [][]byte{make([]byte, 2048)}
		}
		var n uint64
		for {
			k, err := pc.ReadBatch(msgs, 0)
			if err != nil {
				if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
					r.count <- n
					return
				}
				continue
			}
			n += uint64(k)
		}
	}()
	return r, nil
}

// stop ends the receiver after it has drained what is queued, and returns
// how many datagrams it read.
func (r *receiver) stop() uint64 {
	_ = r.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	n := <-r.count
	r.conn.Close()
	return n
}

// rxPackets reads the receive counter of a node's uplink: frames the
// switch delivered to the node.
func rxPackets(tb *testbed.Testbed, node string) (uint64, error) {
	var n uint64
	err := tb.Do(node, func() error {
		l, err := netlink.LinkByName(testbed.UplinkIf)
		if err != nil {
			return err
		}
		n = l.Attrs().Statistics.RxPackets
		return nil
	})
	return n, err
}

func readFile(p string) (string, error) {
	b, err := os.ReadFile(p)
	return strings.TrimSpace(string(b)), err
}
