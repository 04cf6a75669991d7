package dataplane

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// A test network: one "switch" namespace whose interfaces p<N> are the
// switch ports, and "host" namespaces linked to them by veth pairs. All
// names start with dpt<random>- so parallel runs and other tests never
// collide, and leftovers are easy to spot. Addresses come from
// 198.18.0.0/15 and nothing is routed anywhere else.

type testNet struct {
	t      *testing.T
	prefix string
	sw     *nsHandle
}

type nsHandle struct {
	name string
	ns   netns.NsHandle
	nl   *netlink.Handle
}

func (n *nsHandle) path() string { return filepath.Join("/run/netns", n.name) }

// do runs fn on a thread inside the namespace; sockets created by fn belong
// to it for their whole life, whichever goroutine uses them later.
func (n *nsHandle) do(fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(n.ns); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer func() {
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
	}()
	return fn()
}

func newTestNet(t *testing.T) *testNet {
	t.Helper()
	requireRoot(t)
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	n := &testNet{t: t, prefix: "dpt" + hex.EncodeToString(b) + "-"}
	n.sw = n.newNS("sw")
	return n
}

// newNS creates a named namespace, with lo up and IPv6 off (so the tables
// see only the test's traffic), removed when the test ends.
func (n *testNet) newNS(suffix string) *nsHandle {
	t := n.t
	t.Helper()
	name := n.prefix + suffix
	h := &nsHandle{name: name}
	err := func() error {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		orig, err := netns.Get()
		if err != nil {
			return err
		}
		defer orig.Close()
		h.ns, err = netns.NewNamed(name)
		if err != nil {
			return err
		}
		for _, k := range []string{"all", "default"} {
			_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+k+"/disable_ipv6", []byte("1"), 0o644)
			_ = os.WriteFile("/proc/sys/net/ipv4/conf/"+k+"/rp_filter", []byte("0"), 0o644)
		}
		return netns.Set(orig)
	}()
	if err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		if h.nl != nil {
			h.nl.Close()
		}
		h.ns.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	if h.nl, err = netlink.NewHandleAt(h.ns); err != nil {
		t.Fatalf("netlink in %s: %v", name, err)
	}
	lo, err := h.nl.LinkByName("lo")
	if err == nil {
		err = h.nl.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("lo up in %s: %v", name, err)
	}
	return h
}

type testHost struct {
	*nsHandle
	ip  netip.Addr
	mac net.HardwareAddr
}

// addHost creates a host namespace whose eth0 (ip/16, mac) is plugged into
// switch port `port` (interface p<port> in the switch namespace).
func (n *testNet) addHost(name string, port uint32, ip netip.Addr, mac net.HardwareAddr) *testHost {
	h := &testHost{nsHandle: n.newNS(name), ip: ip, mac: mac}
	n.plug(h.nsHandle, "eth0", port, mac, netip.PrefixFrom(ip, 16))
	return h
}

// plug links interface ifname of ns (with mac and, if valid, the address
// pfx) to switch port `port`.
func (n *testNet) plug(h *nsHandle, ifname string, port uint32, mac net.HardwareAddr, pfx netip.Prefix) {
	t := n.t
	t.Helper()
	swName := fmt.Sprintf("p%d", port)
	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: swName},
		PeerName:         ifname,
		PeerHardwareAddr: mac,
		PeerNamespace:    netlink.NsFd(int(h.ns)),
	}
	if err := n.sw.nl.LinkAdd(veth); err != nil {
		t.Fatalf("add veth %s <-> %s/%s: %v", swName, h.name, ifname, err)
	}
	sl, err := n.sw.nl.LinkByName(swName)
	if err == nil {
		err = n.sw.nl.LinkSetUp(sl)
	}
	if err != nil {
		t.Fatalf("switch port %s up: %v", swName, err)
	}
	hl, err := h.nl.LinkByName(ifname)
	if err != nil {
		t.Fatalf("%s/%s: %v", h.name, ifname, err)
	}
	if pfx.IsValid() {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: pfx.Addr().AsSlice(), Mask: net.CIDRMask(pfx.Bits(), 32)}}
		if err := h.nl.AddrAdd(hl, a); err != nil {
			t.Fatalf("address %s on %s/%s: %v", pfx, h.name, ifname, err)
		}
	}
	if err := h.nl.LinkSetUp(hl); err != nil {
		t.Fatalf("%s/%s up: %v", h.name, ifname, err)
	}
}

// loadSwitch loads a Dataplane for the switch namespace and attaches ports.
func (n *testNet) loadSwitch(opts Options, ports ...uint32) *Dataplane {
	t := n.t
	t.Helper()
	opts.Netns = n.sw.path()
	d := loadOrSkip(t, opts)
	for _, p := range ports {
		if err := d.AttachPort(p, fmt.Sprintf("p%d", p)); err != nil {
			t.Fatalf("AttachPort %d: %v", p, err)
		}
	}
	return d
}

// --- sockets inside namespaces ---

func (h *nsHandle) listenTCP(t *testing.T, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	if err := h.do(func() (err error) { l, err = net.Listen("tcp4", addr); return }); err != nil {
		t.Fatalf("listen %s in %s: %v", addr, h.name, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func (h *nsHandle) dialTCP(addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := h.do(func() (err error) {
		c, err = net.DialTimeout("tcp4", addr, timeout)
		return
	})
	return c, err
}

func (h *nsHandle) listenUDP(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := h.do(func() error {
		ua, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			return err
		}
		c, err = net.ListenUDP("udp4", ua)
		return err
	})
	if err != nil {
		t.Fatalf("listen udp %s in %s: %v", addr, h.name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (h *nsHandle) dialUDP(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := h.do(func() error {
		ua, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			return err
		}
		c, err = net.DialUDP("udp4", nil, ua)
		return err
	})
	if err != nil {
		t.Fatalf("dial udp %s in %s: %v", addr, h.name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// serveNamed runs a TCP server that greets each connection with name and
// then answers every line with "name:line". The test's end closes the
// listener and every accepted connection (a peer cut off by the test may
// never send its FIN).
func serveNamed(t *testing.T, l net.Listener, name string) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				// Bounded life: tests finish well within it.
				_ = c.SetDeadline(time.Now().Add(60 * time.Second))
				if _, err := io.WriteString(c, name+"\n"); err != nil {
					return
				}
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := io.WriteString(c, name+":"+line); err != nil {
						return
					}
				}
			}()
		}
	}()
}

// serveUDPNamed answers every datagram with name.
func serveUDPNamed(t *testing.T, c *net.UDPConn, name string) {
	done := make(chan struct{})
	t.Cleanup(func() { c.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			_, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteToUDP([]byte(name), from)
		}
	}()
}

// namedConn is a client connection to a serveNamed server.
type namedConn struct {
	net.Conn
	r    *bufio.Reader
	peer string // the greeting: which server answered
}

func dialNamed(h *nsHandle, addr string) (*namedConn, error) {
	c, err := h.dialTCP(addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	nc := &namedConn{Conn: c, r: bufio.NewReader(c)}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	greet, err := nc.r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("read greeting from %s: %w", addr, err)
	}
	nc.peer = strings.TrimSpace(greet)
	return nc, nil
}

// roundTrip sends a line and checks that the same server echoes it.
func (c *namedConn) roundTrip(line string) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return err
	}
	got, err := c.r.ReadString('\n')
	if err != nil {
		return err
	}
	if want := c.peer + ":" + line + "\n"; got != want {
		return fmt.Errorf("got %q, want %q", got, want)
	}
	return nil
}

func errorsIsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
