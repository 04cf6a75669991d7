package handoff

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/containerflow/containerflow/internal/nsrun"
)

// A client that sends while the container is frozen has its segments
// dropped by CRIU's lock on the source and retransmits them on its own,
// backed-off timer (about 0.2 s, 0.6 s, 1.4 s after the freeze): a client
// that has nothing new to send after that may wait well past the moment
// the destination is ready. The catcher removes that wait without touching
// the client: from the freeze on, it copies, on the source host's uplink,
// every TCP frame addressed to the container (the copy is taken before the
// frame reaches the lock); once the destination owns the address, it sends
// them again into the switch, which now forwards them to the destination.
// The restored socket acknowledges them at once and the client goes on.
// Duplicates are harmless to TCP. UDP datagrams are held another way, in
// the container's namespace, so none arrives twice (udp.go).
type Catcher struct {
	fd      int
	ifindex int
	udp     *udpHold // nil: no UDP hold

	mu     sync.Mutex
	frames [][]byte
	bytes  int
	done   chan struct{} // closed to stop the reader
	exited chan struct{} // closed by the reader when it returns
}

const (
	catchMaxFrames = 4096
	catchMaxBytes  = 16 << 20
)

// Start opens a packet socket on uplink (in hostNetns, "" = ours)
// filtered to TCP frames for mac/ip, and starts copying them; with
// containerNetns, it also holds every UDP datagram entering that
// namespace.
func Start(hostNetns, uplink string, mac net.HardwareAddr, ip netip.Addr, containerNetns string) (*Catcher, error) {
	prog, err := catchFilter(mac, ip)
	if err != nil {
		return nil, err
	}
	var c *Catcher
	open := func() error {
		ifi, err := net.InterfaceByName(uplink)
		if err != nil {
			return err
		}
		// ETH_P_ALL, not ETH_P_IP: taps for one protocol run after the
		// uplink's rx handler (the macvlan) has taken the frame, taps for
		// all protocols before it. The filter does the selecting.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		fprog := &unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, fprog); err != nil {
			unix.Close(fd)
			return fmt.Errorf("attach filter: %w", err)
		}
		// Frames we send back out must not be caught again.
		_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return err
		}
		// A receive timeout lets the reader notice stop() without a poll loop.
		tv := unix.Timeval{Usec: 20000}
		_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		c = &Catcher{fd: fd, ifindex: ifi.Index, done: make(chan struct{}), exited: make(chan struct{})}
		return nil
	}
	if hostNetns == "" {
		err = open()
	} else {
		err = nsrun.Do(hostNetns, open)
	}
	if err != nil {
		return nil, fmt.Errorf("packet catcher on %s: %w", uplink, err)
	}
	if containerNetns != "" {
		if c.udp, err = startUDPHold(containerNetns, mac); err != nil {
			unix.Close(c.fd)
			return nil, err
		}
	}
	go c.read()
	return c, nil
}

func (c *Catcher) read() {
	defer close(c.exited)
	buf := make([]byte, 65536)
	for {
		select {
		case <-c.done:
			return
		default:
		}
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil || n <= 0 {
			continue // timeout (EAGAIN) or a signal: check done again
		}
		c.mu.Lock()
		if len(c.frames) < catchMaxFrames && c.bytes+n <= catchMaxBytes {
			c.frames = append(c.frames, append([]byte(nil), buf[:n]...))
			c.bytes += n
		}
		c.mu.Unlock()
	}
}

// Released says what a Release sent.
type Released struct {
	Frames    int `json:"frames"`    // TCP frames
	Datagrams int `json:"datagrams"` // UDP datagrams held
	// DatagramsLost were held beyond the hold's bound (or dropped by the
	// kernel's NFLOG queue): they are gone, as they would be without it.
	DatagramsLost int `json:"datagrams_lost"`
}

// Release stops catching and holding and sends every caught frame, then
// every held datagram, out of the uplink, each in arrival order. It does
// not wait for the TCP reader (up to one receive timeout): it runs right
// after the destination went live, where every millisecond is downtime.
// The UDP hold is removed before anything is sent: after a rollback the
// datagrams go back into the very namespace that held them.
func (c *Catcher) Release() (Released, error) {
	var r Released
	close(c.done)
	c.mu.Lock()
	frames := c.frames
	c.frames = nil
	c.mu.Unlock()
	defer c.closeWhenIdle()
	var herr error
	if c.udp != nil {
		var dgrams [][]byte
		dgrams, r.DatagramsLost, herr = c.udp.stop()
		c.udp = nil
		if herr != nil {
			// Still held: sending them would only hold them again.
			return r, fmt.Errorf("remove the UDP hold: %w", herr)
		}
		frames = append(frames, dgrams...)
		r.Datagrams = len(dgrams)
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: c.ifindex, Halen: 6}
	for i, f := range frames {
		fixChecksums(f)
		copy(sa.Addr[:], f[0:6])
		if err := unix.Sendto(c.fd, f, 0, sa); err != nil {
			return r, fmt.Errorf("replay frame: %w", err)
		}
		if i < len(frames)-r.Datagrams {
			r.Frames++
		}
	}
	return r, nil
}

// Discard stops catching and holding and drops what was taken (the
// container is gone: its datagrams are lost, as without the hold).
func (c *Catcher) Discard() {
	close(c.done)
	if c.udp != nil {
		_, _, _ = c.udp.stop()
		c.udp = nil
	}
	c.closeWhenIdle()
}

// closeWhenIdle closes the socket once the reader has left Recvfrom.
func (c *Catcher) closeWhenIdle() {
	go func() {
		<-c.exited
		unix.Close(c.fd)
	}()
}

// catchFilter accepts IPv4 TCP frames whose destination MAC and IP are the
// container's.
func catchFilter(mac net.HardwareAddr, ip netip.Addr) ([]unix.SockFilter, error) {
	if len(mac) != 6 || !ip.Is4() {
		return nil, fmt.Errorf("catcher needs a MAC and an IPv4 address")
	}
	a4 := ip.As4()
	ins := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 0, Size: 4}, // dst MAC bytes 0-3
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: binary.BigEndian.Uint32(mac[0:4]), SkipTrue: 9},
		bpf.LoadAbsolute{Off: 4, Size: 2}, // dst MAC bytes 4-5
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(binary.BigEndian.Uint16(mac[4:6])), SkipTrue: 7},
		bpf.LoadAbsolute{Off: 12, Size: 2}, // EtherType
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.ETH_P_IP, SkipTrue: 5},
		bpf.LoadAbsolute{Off: 23, Size: 1}, // IPv4 protocol
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.IPPROTO_TCP, SkipTrue: 3},
		bpf.LoadAbsolute{Off: 30, Size: 4}, // IPv4 destination
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: binary.BigEndian.Uint32(a4[:]), SkipTrue: 1},
		bpf.RetConstant{Val: 0xffff},
		bpf.RetConstant{Val: 0},
	}
	raw, err := bpf.Assemble(ins)
	if err != nil {
		return nil, err
	}
	out := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		out[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return out, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
