package handoff

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"

	"github.com/containerflow/containerflow/internal/cnet"
	"github.com/containerflow/containerflow/internal/nsrun"
)

// UDP has no retransmission of its own: a datagram that reaches a frozen
// container is lost for good (CRIU does not carry a UDP socket's receive
// queue, and the dump's lock drops the rest). The TCP catcher's way — copy
// frames on the host's uplink from the freeze on — cannot be used as is:
// a datagram copied there may also have reached the socket before the
// freeze and been read, and would arrive twice. Instead the container's
// own namespace takes every UDP datagram from just before the freeze
// (cnet.HoldUDP: an NFLOG copy and a drop in one rule), so each datagram
// is either read by the source before it stops or held, never both; the
// hold releases them, in arrival order, once the destination owns the
// address (or to the source again after a rollback).

// nfnetlink_log, from linux/netfilter/nfnetlink_log.h (not in x/sys).
const (
	nfulnlMsgPacket = 0
	nfulnlMsgConfig = 1

	nfulaCfgCmd     = 1
	nfulaCfgMode    = 2
	nfulaCfgTimeout = 4
	nfulaCfgQthresh = 5
	nfulnlCfgBind   = 1
	nfulnlCopyPkt   = 2

	nfulaPayload  = 9
	nfulaHwHeader = 16
)

// The hold's bound: beyond it datagrams are dropped and counted, as the
// lock would drop them. Variables for the test of the bound.
var (
	udpMaxDatagrams = 4096
	udpMaxBytes     = 16 << 20
)

// udpHold receives the datagrams a namespace's hold takes.
type udpHold struct {
	netns string
	conn  *netfilter.Conn
	mac   net.HardwareAddr

	mu       sync.Mutex
	frames   [][]byte // Ethernet frames, ready to send again
	bytes    int
	overflow int // held beyond the bound, so lost
	exited   chan struct{}
}

// startUDPHold binds an NFLOG listener in the container's namespace, then
// installs the hold: no datagram is taken before someone listens.
func startUDPHold(containerNetns string, mac net.HardwareAddr) (*udpHold, error) {
	h := &udpHold{netns: containerNetns, mac: mac, exited: make(chan struct{})}
	err := nsrun.Do(containerNetns, func() error {
		c, err := netfilter.Dial(nil)
		if err != nil {
			return err
		}
		h.conn = c
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("nflog socket in %s: %w", containerNetns, err)
	}
	mode := make([]byte, 6)
	binary.BigEndian.PutUint32(mode, 0xffff) // the whole datagram
	mode[4] = nfulnlCopyPkt
	for _, attrs := range [][]netfilter.Attribute{
		{{Type: nfulaCfgCmd, Data: []byte{nfulnlCfgBind}}},
		{{Type: nfulaCfgMode, Data: mode}},
		{{Type: nfulaCfgQthresh, Data: netfilter.Uint32Bytes(1)}},
		{{Type: nfulaCfgTimeout, Data: netfilter.Uint32Bytes(0)}},
	} {
		msg, err := netfilter.MarshalNetlink(netfilter.Header{SubsystemID: netfilter.NFSubsysULOG, MessageType: nfulnlMsgConfig,
			Family: unix.AF_UNSPEC, ResourceID: cnet.UDPHoldGroup, Flags: netlink.Request | netlink.Acknowledge}, attrs)
		if err == nil {
			_, err = h.conn.Query(msg)
		}
		if err != nil {
			h.conn.Close()
			return nil, fmt.Errorf("configure nflog group %d in %s: %w", cnet.UDPHoldGroup, containerNetns, err)
		}
	}
	_ = h.conn.SetReadBuffer(8 << 20)
	if err := cnet.HoldUDP(containerNetns); err != nil {
		h.conn.Close()
		return nil, err
	}
	go h.read()
	return h, nil
}

func (h *udpHold) read() {
	defer close(h.exited)
	for {
		msgs, err := h.conn.Receive()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) {
				return // stop() set a deadline or closed the socket
			}
			if errors.Is(err, unix.ENOBUFS) {
				h.mu.Lock()
				h.overflow++ // the kernel dropped some: counted, at least once
				h.mu.Unlock()
				continue
			}
			return
		}
		for _, m := range msgs {
			h.take(m)
		}
	}
}

// take turns one NFLOG packet message into the Ethernet frame it came in:
// the hardware header the kernel kept, then the IP datagram.
func (h *udpHold) take(m netlink.Message) {
	hdr, attrs, err := netfilter.UnmarshalNetlink(m)
	if err != nil || hdr.SubsystemID != netfilter.NFSubsysULOG || hdr.MessageType != nfulnlMsgPacket {
		return
	}
	var payload, hw []byte
	for _, a := range attrs {
		switch a.Type {
		case nfulaPayload:
			payload = a.Data
		case nfulaHwHeader:
			hw = a.Data
		}
	}
	if len(payload) == 0 {
		return
	}
	if len(hw) != 14 {
		// Without the header (should not happen on an Ethernet device):
		// to the container's MAC, from it, as IPv4.
		hw = make([]byte, 14)
		copy(hw[0:6], h.mac)
		copy(hw[6:12], h.mac)
		binary.BigEndian.PutUint16(hw[12:14], unix.ETH_P_IP)
	}
	f := append(append(make([]byte, 0, len(hw)+len(payload)), hw...), payload...)
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.frames) >= udpMaxDatagrams || h.bytes+len(f) > udpMaxBytes {
		h.overflow++
		return
	}
	h.frames = append(h.frames, f)
	h.bytes += len(f)
}

// stop removes the hold and returns what it took, in arrival order, and
// how many datagrams were lost to its bound. Datagrams logged before the
// hold went away but not yet read are read first: a deadline already past
// fails a read only once nothing is left to read.
func (h *udpHold) stop() ([][]byte, int, error) {
	err := cnet.ReleaseUDP(h.netns)
	_ = h.conn.SetReadDeadline(time.Now())
	<-h.exited
	h.conn.Close()
	h.mu.Lock()
	defer h.mu.Unlock()
	frames, overflow := h.frames, h.overflow
	h.frames = nil
	return frames, overflow, err
}
