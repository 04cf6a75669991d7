package controller_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/containerflow/containerflow/internal/controller"
	"github.com/containerflow/containerflow/internal/dataplane"
	"github.com/containerflow/containerflow/internal/nsrun"
	"github.com/containerflow/containerflow/internal/testbed"
)

// The controller's tests run against a real testbed with the eBPF switch
// (namespaces PREFIX-switch, -hostA, -hostB, -client; ports 1, 2, 3 named
// after the nodes), an in-process controller taking over its pinned data
// plane, and an HTTP server on loopback. Everything is removed when the
// test ends, also on failure, and the test checks that no namespace or pin
// is left.

const testToken = "s3cret-token"

type env struct {
	t         *testing.T
	tb        *testbed.Testbed
	cfg       *controller.Config
	statePath string
	ctl       *controller.Controller
	srv       *http.Server
	base      string
	c         *controller.Client // with the token
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN) for BPF and namespaces; CI runs as root")
	}
}

func newEnv(t *testing.T, mutate func(*controller.Config)) *env {
	t.Helper()
	return newEnvOpts(t, mutate, nil)
}

// newEnvOpts builds the testbed, runs setup (interfaces that configured
// ports need) and starts the controller.
func newEnvOpts(t *testing.T, mutate func(*controller.Config), setup func(*env)) *env {
	t.Helper()
	requireRoot(t)
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	prefix := "c" + hex.EncodeToString(b)
	t.Cleanup(func() {
		if err := testbed.Down(prefix); err != nil {
			t.Errorf("testbed down: %v", err)
		}
		if left, _ := nsrun.List(prefix + "-"); len(left) > 0 {
			t.Errorf("namespaces left: %v", left)
		}
		if _, err := os.Lstat("/sys/fs/bpf/containerflow/testbed-" + prefix); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("pins left (%v)", err)
		}
	})
	tb, err := testbed.Up(testbed.Config{Prefix: prefix})
	if errors.Is(err, dataplane.ErrInvalid) {
		t.Skipf("no bpffs: %v", err)
	}
	if err != nil {
		t.Fatalf("testbed up: %v", err)
	}
	cfg := testbed.ControllerConfig()
	if mutate != nil {
		mutate(cfg)
	}
	e := &env{t: t, tb: tb, cfg: cfg, statePath: filepath.Join(t.TempDir(), "state.db")}
	if setup != nil {
		setup(e)
	}
	e.start()
	t.Cleanup(e.stop)
	return e
}

func (e *env) options() controller.Options {
	return controller.Options{Config: e.cfg, PinPath: e.tb.PinPath(), Netns: nsrun.Path(e.tb.Prefix + "-" + testbed.Switch),
		StatePath: e.statePath, Token: testToken, Logger: slog.New(slog.DiscardHandler)}
}

func (e *env) start() {
	e.t.Helper()
	ctl, err := controller.New(e.options())
	if err != nil {
		e.t.Fatalf("controller: %v", err)
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	e.ctl, e.srv = ctl, &http.Server{Handler: ctl.Handler()}
	go e.srv.Serve(l) //nolint:errcheck // ends with Close
	e.base = "http://" + l.Addr().String()
	e.c = controller.NewClient(e.base, controller.ClientOptions{Token: testToken})
}

func (e *env) stop() {
	if e.ctl == nil {
		return
	}
	_ = e.srv.Close()
	if err := e.ctl.Close(); err != nil {
		e.t.Errorf("controller close: %v", err)
	}
	e.ctl = nil
}

// restart stops the controller and starts a new one on the same pins and
// state, as a process restart would.
func (e *env) restart() {
	e.t.Helper()
	e.stop()
	e.start()
}

// call sends a raw request and returns the status and body.
func (e *env) call(method, path, body string, token string) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// mustCall is call with the token, failing unless the status is want.
func (e *env) mustCall(want int, method, path, body string) []byte {
	e.t.Helper()
	code, b := e.call(method, path, body, testToken)
	if code != want {
		e.t.Fatalf("%s %s %s: HTTP %d, want %d: %s", method, path, body, code, want, b)
	}
	return b
}

func decodeAs[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

// tables is a comparable snapshot of the data plane's tables, without
// counters.
func (e *env) tables() string {
	e.t.Helper()
	s, err := controller.TablesSnapshot(e.ctl)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// container creates a container namespace on a host (macvlan on its
// uplink, see testbed.AddContainerNet).
func (e *env) container(host, name string, ip netip.Addr, mac net.HardwareAddr) *testbed.ContainerNet {
	e.t.Helper()
	c, err := e.tb.AddContainerNet(host, name, ip, mac)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// leg gives a container namespace a second interface on a new switch port
// (interface sw-leg in the switch namespace), with the container's address
// as /32 and its own MAC, so one server can be reached through two ports:
// a same-IP move between them keeps the server's sockets, and any packet
// lost would be the switch's doing.
func (e *env) leg(c *testbed.ContainerNet, mac net.HardwareAddr) {
	e.t.Helper()
	sw, err := nsHandle(e.tb.Prefix + "-" + testbed.Switch)
	if err != nil {
		e.t.Fatal(err)
	}
	defer sw.Close()
	target, err := netnsFd(c.Netns)
	if err != nil {
		e.t.Fatal(err)
	}
	defer target.Close()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "sw-leg"}, PeerName: "eth1", PeerHardwareAddr: mac,
		PeerNamespace: netlink.NsFd(int(target.Fd()))}
	if err := sw.LinkAdd(v); err != nil {
		e.t.Fatalf("add leg: %v", err)
	}
	l, err := sw.LinkByName("sw-leg")
	if err == nil {
		err = sw.LinkSetUp(l)
	}
	if err != nil {
		e.t.Fatal(err)
	}
	err = nsrun.Do(c.Netns, func() error {
		for _, k := range []string{"all", "default", "eth0", "eth1"} {
			_ = os.WriteFile("/proc/sys/net/ipv4/conf/"+k+"/rp_filter", []byte("0"), 0o644)
		}
		l, err := netlink.LinkByName("eth1")
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: netipNet(netip.PrefixFrom(c.IP, 32))}); err != nil {
			return err
		}
		return netlink.LinkSetUp(l)
	})
	if err != nil {
		e.t.Fatalf("set up leg: %v", err)
	}
}

// udpCount sends n datagrams from the client node to dst and returns how
// many each listener received.
func (e *env) udpCount(dst netip.AddrPort, n int, listeners ...*net.UDPConn) []int {
	e.t.Helper()
	c, err := e.tb.Dial(testbed.Client, "udp4", dst.String(), time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < n; i++ {
		// An ICMP port unreachable from an earlier datagram surfaces as
		// ECONNREFUSED here; the datagram still crosses the switch.
		_, _ = c.Write([]byte("x"))
		time.Sleep(200 * time.Microsecond)
	}
	out := make([]int, len(listeners))
	for i, l := range listeners {
		buf := make([]byte, 64)
		for {
			_ = l.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if _, _, err := l.ReadFrom(buf); err != nil {
				break
			}
			out[i]++
		}
	}
	return out
}

func (e *env) listenUDP(node string, at netip.AddrPort) *net.UDPConn {
	e.t.Helper()
	var c *net.UDPConn
	if err := e.tb.Do(node, func() (err error) {
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(at))
		return err
	}); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// echoServer answers each line with "NAME: line" on every connection.
func (e *env) echoServer(node, addr, name string) {
	e.t.Helper()
	l, err := e.tb.Listen(node, "tcp4", addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(append([]byte(name+": "), buf[:n]...)); err != nil {
						return
					}
				}
			}()
		}
	}()
}

// roundTrip writes msg and reads the echo.
func roundTrip(c net.Conn, msg, name string) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	want := name + ": " + msg
	got := make([]byte, 0, len(want))
	buf := make([]byte, 4096)
	for len(got) < len(want) {
		n, err := c.Read(buf)
		if err != nil {
			return fmt.Errorf("read echo (%d of %d bytes): %w", len(got), len(want), err)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Equal(got, []byte(want)) {
		return fmt.Errorf("echo %q, want %q", got, want)
	}
	return nil
}

func bg() context.Context { return context.Background() }

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
