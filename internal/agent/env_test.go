package agent

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/criu"
	"github.com/containerflow/containerflow/internal/pki"
	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/testbed/tbtest"
)

// TestMain lets the test binary stand in for `cflow agent hook`, which CRIU
// runs while restoring an incoming container.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "agent" && os.Args[2] == "hook" {
		os.Exit(HookMain(os.Args[3:]))
	}
	os.Exit(m.Run())
}

// env is a testbed with an agent on each host, run inside this test
// process (each agent's network work happens in its host's namespace).
type env struct {
	t       *testing.T
	tb      *testbed.Testbed
	agents  map[string]*Agent
	clients map[string]*Client
	servers map[string]*http.Server
	configs map[string]Config
	steer   *tbSteerer
	// hook, when set, runs after every request an agent has answered.
	hook func(host string, r *http.Request)
}

type tbSteerer struct {
	tb     *testbed.Testbed
	refuse bool
	slow   time.Duration // a refusal takes this long (a switch timing out)
}

func (s *tbSteerer) Steer(_ context.Context, ip netip.Addr, mac net.HardwareAddr, host string) error {
	if s.refuse {
		time.Sleep(s.slow)
		return fmt.Errorf("switch refused the update (fault injection)")
	}
	return s.tb.Steer(ip, mac, host)
}

// newEnv starts the testbed and its agents; opts adjust each host's
// configuration before its agent starts.
func newEnv(t *testing.T, opts ...func(host string, c *Config)) *env {
	t.Helper()
	return newEnvAs(t, nil, opts...)
}

// newEnvAs is newEnv whose clients call as cli over TLS (nil: plain).
func newEnvAs(t *testing.T, cli *pki.Identity, opts ...func(host string, c *Config)) *env {
	t.Helper()
	tbtest.RequireRoot(t, "namespaces, runc and CRIU")
	b, _, err := criu.Find(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Made before the teardown is registered, so it is removed after it:
	// runc state must outlive the processes it describes.
	base := t.TempDir()
	tb := tbtest.Up(t, "a", testbed.Config{})
	prefix := tb.Prefix
	e := &env{t: t, tb: tb, agents: map[string]*Agent{}, clients: map[string]*Client{}, servers: map[string]*http.Server{}, configs: map[string]Config{}, steer: &tbSteerer{tb: tb}}
	t.Cleanup(func() {
		for _, a := range e.agents {
			a.RemoveAll(context.Background())
			a.Close()
		}
		for _, s := range e.servers {
			s.Close()
		}
	})
	peers := map[string]string{}
	for _, h := range tb.Hosts() {
		peers[h] = testbed.AgentURL(h)
	}
	token := "test-token"
	for _, h := range tb.Hosts() {
		hostNs, _ := tb.Netns(h)
		dir := filepath.Join(base, h)
		self, _ := os.Executable()
		e.configs[h] = Config{
			HookCommand: []string{self, "agent", "hook"}, HookSocket: filepath.Join(base, h+".sock"),
			Name: h, StateDir: dir, // images in /dev/shm/containerflow/PREFIX-HOST, removed by testbed.Down
			NetnsPrefix: prefix + "-" + h + "-", HostNetns: hostNs, Uplink: testbed.UplinkIf,
			PrefixLen: testbed.DataNet.Bits(), Peers: peers, Steerer: e.steer, Token: token, CRIU: b.Path,
			CRIUTimeout: 5 * time.Second,
		}
		for _, o := range opts {
			c := e.configs[h]
			o(h, &c)
			e.configs[h] = c
		}
		e.startAgent(h)
		co := ClientOptions{Token: token, Netns: hostNs}
		if cli != nil {
			co.TLS = cli.ClientConfig(h)
		}
		e.clients[h] = NewClient(e.configs[h].Peers[h], co)
	}
	return e
}

// newTLSEnv is newEnv with the agents serving and calling each other over
// mutual TLS, as the testbed's agents do: identities of one CA, each
// host's naming its management address; the test's clients are the CLI.
func newTLSEnv(t *testing.T, opts ...func(host string, c *Config)) *env {
	dir := t.TempDir()
	if err := pki.InitCA(dir); err != nil {
		t.Fatal(err)
	}
	id := func(name string, ips ...string) *pki.Identity {
		if _, _, err := pki.Issue(dir, name, ips); err != nil {
			t.Fatal(err)
		}
		i, err := pki.Load(dir, name)
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	withTLS := func(h string, c *Config) {
		s, _ := testbed.PlannedSpec(h)
		c.TLS = id(h, s.MgmtIP.String())
		peers := map[string]string{}
		for p := range c.Peers {
			peers[p] = testbed.AgentTLSURL(p)
		}
		c.Peers = peers
	}
	return newEnvAs(t, id(pki.CLI), append([]func(string, *Config){withTLS}, opts...)...)
}

// startAgent (re)starts the agent of host h, serving on its management
// address.
func (e *env) startAgent(h string) {
	e.t.Helper()
	if old := e.agents[h]; old != nil {
		old.Close() // its sampler and its watch on the inits: what it ran the new one adopts
	}
	a, err := New(e.configs[h])
	if err != nil {
		e.t.Fatal(err)
	}
	spec, _ := e.tb.Spec(h)
	l, err := e.tb.Listen(h, "tcp4", fmt.Sprintf("%s:%d", spec.MgmtIP, testbed.AgentPort))
	if err != nil {
		e.t.Fatal(err)
	}
	inner := a.Handler()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inner.ServeHTTP(w, r)
		if e.hook != nil {
			e.hook(h, r)
		}
	})}
	if id := e.configs[h].TLS; id != nil {
		l = tls.NewListener(l, id.ServerConfig())
	}
	go srv.Serve(l) //nolint:errcheck // closed in cleanup
	_ = os.Remove(e.configs[h].HookSocket)
	ul, err := net.Listen("unix", e.configs[h].HookSocket)
	if err != nil {
		e.t.Fatal(err)
	}
	go srv.Serve(ul) //nolint:errcheck // closed with the server
	e.agents[h], e.servers[h] = a, srv
}

// stopAgent closes an agent's server, as if the agent had died.
func (e *env) stopAgent(h string) {
	e.servers[h].Close()
}

// runOn starts a container through the API (which steers the switch).
func (e *env) runOn(host string, s ContainerSpec) ContainerInfo {
	e.t.Helper()
	info, err := e.clients[host].Run(context.Background(), s)
	if err != nil {
		e.t.Fatalf("run %s on %s: %v", s.Name, host, err)
	}
	return info
}

// dial connects from the client node, retrying while the server starts.
func (e *env) dial(addr string) net.Conn {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := e.tb.Dial(testbed.Client, "tcp4", addr, time.Second)
		if err == nil {
			// Held until the test ends: a connection the test no longer
			// uses would otherwise be closed by its finalizer at the next
			// GC, and a server that ends with its client (testprog's
			// Counter) would exit in the middle of the test's checks.
			e.t.Cleanup(func() { c.Close() })
			return c
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("dial %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lineConn sends a line and reads one back.
type lineConn struct {
	t  *testing.T
	c  net.Conn
	rd *bufio.Reader
}

func newLineConn(t *testing.T, c net.Conn) *lineConn {
	return &lineConn{t: t, c: c, rd: bufio.NewReader(c)}
}

func (l *lineConn) say(msg, want string) {
	l.t.Helper()
	_ = l.c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := fmt.Fprintf(l.c, "%s\n", msg); err != nil {
		l.t.Fatalf("send %q: %v", msg, err)
	}
	got, err := l.rd.ReadString('\n')
	if err != nil || got != want+"\n" {
		l.t.Fatalf("after %q: got %q, %v; want %q", msg, got, err, want)
	}
}
