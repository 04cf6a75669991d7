package testbed

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/containerflow/containerflow/internal/nsrun"
)

// The relay is the impairment mechanism for kernels without netem (this
// one has only tbf, htb and ingress among qdiscs). Each direction of a
// link is taken at the egress of the interface that sends it — the node's
// eth0/mgmt0 for node->switch, the switch's sw-NODE/mg-NODE for
// switch->node — because both the stack and the eBPF switch's redirects
// pass there: a u32 match-all filter on its clsact egress hook redirects
// every frame to a tap device, whose file descriptor the relay reads. The
// relay holds each frame for its delay, drops by a seeded PRNG, paces to
// the rate, and then writes it back on the same interface through an
// AF_PACKET socket with PACKET_QDISC_BYPASS, which skips the tc egress
// hook (and so the filter): the frame leaves as if it had never been taken.
// Ingress would have needed a way to re-inject without meeting the filter
// again; egress on both ends has that for free.

// impairFilterPrio is the tc priority of the relay's redirect filter, kept
// apart from anything else on the hook so it can be deleted by value.
const impairFilterPrio = 0xcf

// relayTapPrefix names the taps: "ifx-" and the interface they serve.
const relayTapPrefix = "ifx-"

// RelayStats counts one direction's frames since the relay started.
type RelayStats struct {
	Received  uint64 `json:"received"`
	Lost      uint64 `json:"lost"`       // by the loss probability
	QueueDrop uint64 `json:"queue_drop"` // rate queue full
	Sent      uint64 `json:"sent"`
	SendError uint64 `json:"send_error"`
}

// relayDir is one direction of a link.
type relayDir struct {
	name    string // "up" (node->switch) or "down" (switch->node)
	ns      string
	ifname  string
	ifindex int
	tap     *os.File
	tapIdx  int
	sock    int
	im      Impairment
	lossRng *rand.Rand
	jitRng  *rand.Rand
	q       chan heldFrame
	st      struct{ rx, lost, qdrop, sent, serr atomic.Uint64 }
}

type heldFrame struct {
	at time.Time
	b  []byte
}

func (d *relayDir) stats() RelayStats {
	return RelayStats{Received: d.st.rx.Load(), Lost: d.st.lost.Load(), QueueDrop: d.st.qdrop.Load(),
		Sent: d.st.sent.Load(), SendError: d.st.serr.Load()}
}

// RelayMain is `cflow testbed impair-relay`: it impairs link of testbed
// prefix until SIGTERM, then takes its filters away. When ready it writes
// the link's impairment state (with its pid), which Impair waits for.
func RelayMain(prefix, link string, im Impairment) error {
	tb, err := Open(prefix)
	if err != nil {
		return err
	}
	l, err := tb.parseLink(link)
	if err != nil {
		return err
	}
	if err := im.Validate(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// Distinct streams per direction and per purpose: the drop pattern
	// depends only on the seed and the frame's index in its direction,
	// not on jitter or timing.
	dirs := []*relayDir{
		{name: "up", ns: tb.mustNetns(l.Node), ifname: l.NodeIf()},
		{name: "down", ns: tb.mustNetns(Switch), ifname: l.SwitchIf()},
	}
	for i, d := range dirs {
		d.im = im
		d.lossRng = rand.New(rand.NewPCG(im.Seed, uint64(2*i)))
		d.jitRng = rand.New(rand.NewPCG(im.Seed, uint64(2*i+1)))
		d.q = make(chan heldFrame, 1<<16)
	}
	defer func() {
		for _, d := range dirs {
			d.close()
		}
	}()
	for _, d := range dirs {
		if err := d.open(); err != nil {
			return fmt.Errorf("%s %s: %w", link, d.name, err)
		}
	}
	// Filters last: from here on frames reach the taps, and the reader
	// goroutines are about to take them.
	var wg sync.WaitGroup
	for _, d := range dirs {
		wg.Add(2)
		go func() { defer wg.Done(); d.read() }()
		go func() { defer wg.Done(); d.send() }()
	}
	for _, d := range dirs {
		if err := d.redirect(); err != nil {
			removeRelayFilters(tb, l)
			return fmt.Errorf("%s %s: %w", link, d.name, err)
		}
	}
	state := LinkImpairment{Link: l.String(), Impairment: im, Mechanism: MechanismRelay, PID: os.Getpid(), Since: time.Now().UTC()}
	if err := writeJSON(tb.impairFile(l, ".json"), state); err != nil {
		removeRelayFilters(tb, l)
		return err
	}
	fmt.Fprintf(os.Stderr, "%s relay %s: %s (%s up, %s down)\n", time.Now().Format(time.RFC3339), l, im, dirs[0].ifname, dirs[1].ifname)

	writeStats := func() {
		_ = writeJSON(tb.impairFile(l, ".stats.json"), map[string]RelayStats{"up": dirs[0].stats(), "down": dirs[1].stats()})
	}
	writeStats()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
		}
		writeStats()
	}
	// Filters first, so no frame is redirected to a tap nobody reads;
	// frames still held are lost, as on a link that is taken down.
	removeRelayFilters(tb, l)
	for _, d := range dirs {
		d.close()
	}
	wg.Wait()
	writeStats()
	fmt.Fprintf(os.Stderr, "%s relay %s stopped: up %+v down %+v\n", time.Now().Format(time.RFC3339), l, dirs[0].stats(), dirs[1].stats())
	return nil
}

// open creates the tap and the sending socket inside the direction's
// namespace; both stay there whichever thread uses them later.
func (d *relayDir) open() error {
	return nsrun.Do(d.ns, func() error {
		lk, err := netlink.LinkByName(d.ifname)
		if err != nil {
			return err
		}
		d.ifindex = lk.Attrs().Index
		tapName := relayTapPrefix + d.ifname
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(tapName)
		if err != nil {
			unix.Close(fd)
			return err
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return fmt.Errorf("create tap %s: %w", tapName, err)
		}
		d.tap = os.NewFile(uintptr(fd), tapName)
		tap, err := netlink.LinkByName(tapName)
		if err != nil {
			return err
		}
		d.tapIdx = tap.Attrs().Index
		// Room for a burst while the reader is descheduled; the tap
		// drops beyond its queue.
		if err := netlink.LinkSetTxQLen(tap, 10000); err != nil {
			return err
		}
		if err := netlink.LinkSetUp(tap); err != nil {
			return err
		}
		s, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0) // protocol 0: send only
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		d.sock = s
		if err := unix.SetsockoptInt(s, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
			return fmt.Errorf("PACKET_QDISC_BYPASS: %w", err)
		}
		if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20); err != nil {
			return err
		}
		return unix.Bind(s, &unix.SockaddrLinklayer{Ifindex: d.ifindex})
	})
}

// redirect installs the match-all filter that sends the interface's egress
// frames to the tap.
func (d *relayDir) redirect() error {
	return nsrun.Do(d.ns, func() error {
		q := &netlink.GenericQdisc{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: d.ifindex,
			Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}, QdiscType: "clsact"}
		if err := netlink.QdiscAdd(q); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add clsact to %s: %w", d.ifname, err)
		}
		f := &netlink.U32{
			FilterAttrs: netlink.FilterAttrs{LinkIndex: d.ifindex, Parent: netlink.HANDLE_MIN_EGRESS,
				Priority: impairFilterPrio, Protocol: unix.ETH_P_ALL},
			Actions: []netlink.Action{&netlink.MirredAction{
				ActionAttrs:  netlink.ActionAttrs{Action: netlink.TC_ACT_STOLEN},
				MirredAction: netlink.TCA_EGRESS_REDIR, Ifindex: d.tapIdx,
			}},
		}
		if err := netlink.FilterAdd(f); err != nil {
			return fmt.Errorf("redirect %s egress to %s: %w", d.ifname, relayTapPrefix+d.ifname, err)
		}
		return nil
	})
}

func (d *relayDir) close() {
	if d.tap != nil {
		d.tap.Close() // ends read()
		d.tap = nil
	}
}

// read takes frames off the tap and decides each one's fate at arrival:
// loss first (one draw per frame, so the pattern is the seed's alone),
// then the rate queue, then the delay. Departure times never decrease, so
// frames keep their order: jitter shifts them, it does not reorder.
func (d *relayDir) read() {
	defer close(d.q)
	buf := make([]byte, 1<<16)
	var busy, last time.Time
	limitBytes := float64(d.im.limit() * 1514)
	for {
		n, err := d.tap.Read(buf)
		if err != nil {
			return
		}
		now := time.Now()
		d.st.rx.Add(1)
		if d.im.Loss > 0 && d.lossRng.Float64()*100 < d.im.Loss {
			d.st.lost.Add(1)
			continue
		}
		at := now
		if d.im.Rate > 0 {
			if busy.Before(now) {
				busy = now
			}
			backlog := busy.Sub(now).Seconds() * float64(d.im.Rate) / 8
			if backlog+float64(n) > limitBytes {
				d.st.qdrop.Add(1)
				continue
			}
			busy = busy.Add(time.Duration(float64(n*8) / float64(d.im.Rate) * 1e9))
			at = busy
		}
		delay := d.im.Delay
		if d.im.Jitter > 0 {
			delay += time.Duration((d.jitRng.Float64()*2 - 1) * float64(d.im.Jitter))
		}
		at = at.Add(delay)
		if at.Before(last) {
			at = last
		}
		last = at
		select {
		case d.q <- heldFrame{at: at, b: append([]byte(nil), buf[:n]...)}:
		default:
			d.st.qdrop.Add(1)
		}
	}
}

// send releases held frames at their time. It sleeps with nanosleep on a
// thread of its own with a 1µs timer slack: Go's timers wake up to a
// millisecond late, which would show in every delay.
func (d *relayDir) send() {
	runtime.LockOSThread()
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1000, 0, 0, 0)
	defer unix.Close(d.sock)
	for f := range d.q {
		if w := time.Until(f.at); w > 0 {
			ts := unix.NsecToTimespec(w.Nanoseconds())
			for unix.Nanosleep(&ts, &ts) == unix.EINTR {
			}
		}
		if len(f.b) < 14 {
			continue
		}
		proto := binary.BigEndian.Uint16(f.b[12:14])
		sa := &unix.SockaddrLinklayer{Ifindex: d.ifindex, Protocol: htons(proto)}
		if err := unix.Sendto(d.sock, f.b, 0, sa); err != nil {
			d.st.serr.Add(1)
			continue
		}
		d.st.sent.Add(1)
	}
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return *(*uint16)(unsafe.Pointer(&b[0]))
}

// removeRelayFilters takes the relay's filters off both ends of a link, and
// the clsact qdisc when nothing else is on it. Idempotent; it also cleans
// up after a relay killed with SIGKILL (its taps died with it).
func removeRelayFilters(tb *Testbed, l LinkRef) {
	ends := []struct{ node, ifname string }{{l.Node, l.NodeIf()}, {Switch, l.SwitchIf()}}
	for _, e := range ends {
		ns, err := tb.Netns(e.node)
		if err != nil || !nsrun.Exists(ns) {
			continue
		}
		_ = nsrun.Do(ns, func() error {
			lk, err := netlink.LinkByName(e.ifname)
			if err != nil {
				return err
			}
			idx := lk.Attrs().Index
			_ = netlink.FilterDel(&netlink.U32{FilterAttrs: netlink.FilterAttrs{LinkIndex: idx,
				Parent: netlink.HANDLE_MIN_EGRESS, Priority: impairFilterPrio, Protocol: unix.ETH_P_ALL}})
			var others int
			for _, p := range []uint32{netlink.HANDLE_MIN_EGRESS, netlink.HANDLE_MIN_INGRESS} {
				fs, _ := netlink.FilterList(lk, p)
				others += len(fs)
			}
			if others == 0 {
				_ = netlink.QdiscDel(&netlink.GenericQdisc{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: idx,
					Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}, QdiscType: "clsact"})
			}
			return nil
		})
	}
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
