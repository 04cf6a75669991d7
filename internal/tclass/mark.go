package tclass

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// DefaultDSCP is CS1 (TOS byte 0x20), the "lower effort" per-hop behaviour
// of RFC 8622 (formerly "scavenger", RFC 3662): bulk traffic that should
// use spare capacity and yield to everything else. Migration images are
// that, outside the frozen window.
const DefaultDSCP = 8

// CheckDSCP validates a DSCP given by an operator: -1 (do not mark) or
// 1-63. 0 is refused: it is the default class every unmarked packet
// carries, so classifying on it would put all traffic into "migration".
func CheckDSCP(dscp int) error {
	if dscp == -1 || (dscp >= 1 && dscp <= 63) {
		return nil
	}
	return fmt.Errorf("DSCP %d: want 1-63, or -1 for unmarked (0 is every unmarked packet's)", dscp)
}

// Marks reports whether dscp asks for marking at all.
func Marks(dscp int) bool { return dscp > 0 && dscp <= 63 }

// Control returns a net.Dialer Control function that marks every socket
// it dials with dscp, or nil when dscp does not mark. Marking at the
// socket, before connect, puts the mark on the SYN too and on every
// retransmission; nothing downstream has to guess which flow is which.
func Control(dscp int) func(network, address string, c syscall.RawConn) error {
	if !Marks(dscp) {
		return nil
	}
	return func(network, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = markFD(int(fd), network, dscp) }); err != nil {
			return err
		}
		return serr
	}
}

// markFD sets the traffic class of one socket. A tcp6 socket may carry
// IPv4 too (v4-mapped addresses), which only IP_TOS marks.
func markFD(fd int, network string, dscp int) error {
	tos := dscp << 2 // the low two bits are ECN, which the kernel keeps
	switch network {
	case "tcp4", "udp4":
		return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TOS, tos)
	case "tcp6", "udp6", "tcp", "udp":
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_TCLASS, tos); err != nil {
			return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TOS, tos)
		}
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TOS, tos)
		return nil
	}
	return nil
}

// MarkConn marks an established TCP connection (one accepted from a
// peer). Later segments carry the mark; the handshake did not.
func MarkConn(c net.Conn, dscp int) error {
	tc, ok := c.(*net.TCPConn)
	if !ok || !Marks(dscp) {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	network := "tcp4"
	if a, ok := tc.LocalAddr().(*net.TCPAddr); ok && a.IP.To4() == nil {
		network = "tcp6"
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = markFD(int(fd), network, dscp) }); err != nil {
		return err
	}
	return serr
}

// Listener marks the connections it accepts from the given peer
// addresses. The bulk of some agent-to-agent exchanges flows back on a
// connection the other side dialed (a destination fetching a container's
// log history from its source): marking only what this agent dials would
// leave those in the live class.
func Listener(l net.Listener, dscp int, peers []netip.Addr) net.Listener {
	if !Marks(dscp) || len(peers) == 0 {
		return l
	}
	set := map[netip.Addr]bool{}
	for _, p := range peers {
		set[p.Unmap()] = true
	}
	return &markListener{Listener: l, dscp: dscp, peers: set}
}

type markListener struct {
	net.Listener
	dscp  int
	peers map[netip.Addr]bool
}

func (m *markListener) Accept() (net.Conn, error) {
	c, err := m.Listener.Accept()
	if err != nil {
		return c, err
	}
	if ap, perr := netip.ParseAddrPort(c.RemoteAddr().String()); perr == nil && m.peers[ap.Addr().Unmap()] {
		// Best effort: an unmarked connection still works, in the
		// live class.
		_ = MarkConn(c, m.dscp)
	}
	return c, nil
}
