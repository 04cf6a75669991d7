package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/agent"
	"github.com/containerflow/containerflow/internal/controller"
	"github.com/containerflow/containerflow/internal/nsrun"
	"github.com/containerflow/containerflow/internal/pki"
	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/testbed/tbtest"
)

// caller makes raw requests on the testbed's management network from the
// switch namespace, with a chosen TLS configuration (nil: plain HTTP).
type caller struct {
	t   *testing.T
	hc  *http.Client
	tok string
}

func newCaller(t *testing.T, tb *testbed.Testbed, cfg *tls.Config) *caller {
	ns, _ := tb.Netns(testbed.Switch)
	d := &net.Dialer{Timeout: 3 * time.Second}
	tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = nsrun.Do(ns, func() error { c, err = d.DialContext(ctx, network, addr); return err })
			return c, err
		}}
	tok, _ := tb.Token()
	return &caller{t: t, hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}, tok: tok}
}

// call returns the status (0 when the connection failed) and the body or
// the connection's error.
func (c *caller) call(method, url string, body any) (int, string) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Authorization", "Bearer "+c.tok)
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Mutual TLS on the testbed as users run it: a certificate of another CA,
// an expired one, plain HTTP to a TLS port, and hosts acting for each
// other are all refused, and nothing changes.
func TestTLSIdentities(t *testing.T) {
	tbtest.RequireRoot(t, "the testbed, runc and CRIU")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tb := tbtest.Up(t, "t", testbed.Config{AgentBinary: self, Insecure: true})
	if !tb.TLS {
		t.Fatal("the testbed did not start its agents with TLS")
	}
	tok, _ := tb.Token()
	ctx := context.Background()
	local := agent.NewClient("unix://"+tb.AgentSocket(testbed.HostA), agent.ClientOptions{Token: tok})
	info, err := local.Run(ctx, agent.ContainerSpec{Name: "s", Args: []string{"sleep", "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	id := func(name string) *pki.Identity {
		i, err := tb.Identity(name)
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	agentA := testbed.AgentTLSURL(testbed.HostA)
	ctl := testbed.ControllerTLSURL()
	unchanged := func(step string) {
		t.Helper()
		got, err := local.Get(ctx, "s")
		if err != nil || got.State != agent.StateRunning || got.Pid != info.Pid {
			t.Fatalf("%s: the container changed: %+v %v", step, got, err)
		}
		cs, _ := local.List(ctx)
		if len(cs) != 1 {
			t.Fatalf("%s: containers on hostA: %+v", step, cs)
		}
		rec, err := tb.ControllerClient().Name(ctx, "s")
		if err != nil || rec.Host != testbed.HostA {
			t.Fatalf("%s: registry: %+v %v", step, rec, err)
		}
		av, err := tb.ControllerClient().Address(ctx, info.IP)
		if err != nil || av.Forward == nil || av.Forward.PortName != testbed.HostA {
			t.Fatalf("%s: steering: %+v %v", step, av, err)
		}
	}
	refused := func(step string, code int, body string, want ...string) {
		t.Helper()
		if code >= 200 && code < 300 {
			t.Fatalf("%s: accepted (%d %s)", step, code, body)
		}
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Fatalf("%s: answer %d %q does not say %q", step, code, body, w)
			}
		}
		unchanged(step)
	}
	run := agent.ContainerSpec{Name: "x", Args: []string{"sleep", "1000"}}

	// The CLI's identity may do a user's operations.
	cli := newCaller(t, tb, id(pki.CLI).ClientConfig(testbed.HostA))
	if code, body := cli.call("GET", agentA+"/v1/containers/s", nil); code != 200 {
		t.Fatalf("cli over TLS: %d %s", code, body)
	}
	if code, body := newCaller(t, tb, id(pki.CLI).ClientConfig(pki.Controller)).call("GET", ctl+"/v1/names", nil); code != 200 {
		t.Fatalf("cli to the controller over TLS: %d %s", code, body)
	}

	// Plain HTTP to the TLS ports.
	plain := newCaller(t, tb, nil)
	code, body := plain.call("POST", strings.Replace(agentA, "https", "http", 1)+"/v1/containers", run)
	refused("plain HTTP to the agent's TLS port", code, body, "HTTPS")
	code, body = plain.call("POST", strings.Replace(ctl, "https", "http", 1)+"/v1/names", controller.NameRequest{Name: "x", Host: testbed.HostA})
	refused("plain HTTP to the controller's TLS port", code, body, "HTTPS")

	// A certificate of another CA, for a name the testbed knows.
	other := t.TempDir()
	if err := pki.InitCA(other); err != nil {
		t.Fatal(err)
	}
	if _, _, err := pki.Issue(other, pki.CLI, nil); err != nil {
		t.Fatal(err)
	}
	stranger, err := pki.Load(other, pki.CLI)
	if err != nil {
		t.Fatal(err)
	}
	// The client must trust the testbed's CA to get as far as showing its
	// certificate: only the server's verdict is under test.
	cfg := stranger.ClientConfig(testbed.HostA)
	cfg.RootCAs = id(pki.CLI).Pool
	code, body = newCaller(t, tb, cfg).call("POST", agentA+"/v1/containers", run)
	refused("a certificate of another CA", code, body, "unknown certificate authority")
	// ... and a client of the testbed refuses a server of another CA.
	fake, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fsrv := &http.Server{Handler: http.NotFoundHandler(), ErrorLog: log.New(io.Discard, "", 0)}
	go fsrv.Serve(tls.NewListener(fake, stranger.ServerConfig())) //nolint:errcheck
	t.Cleanup(func() { fsrv.Close() })
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: id(testbed.HostA).ClientConfig(pki.CLI)}, Timeout: 5 * time.Second}
	if _, err := hc.Get("https://" + fake.Addr().String() + "/"); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Fatalf("a server of another CA: %v", err)
	}

	// An expired certificate of the testbed's own CA.
	ca, err := pki.LoadCA(tb.PKIDir())
	if err != nil {
		t.Fatal(err)
	}
	cp, kp, err := ca.Issue(pki.CLI, nil, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(pki.CACertPath(tb.PKIDir()))
	expired, err := pki.FromPEM(pki.CLI, caPEM, cp, kp)
	if err != nil {
		t.Fatal(err)
	}
	code, body = newCaller(t, tb, expired.ClientConfig(testbed.HostA)).call("DELETE", agentA+"/v1/containers/s", nil)
	refused("an expired certificate", code, body, "expired certificate")

	// hostB's certificate acting as hostA, or as the CLI.
	asB := newCaller(t, tb, id(testbed.HostB).ClientConfig(testbed.HostA))
	code, body = asB.call("DELETE", agentA+"/v1/containers/s", nil)
	refused("hostB removing a container", code, body, "hostB may not")
	if code != http.StatusForbidden {
		t.Fatalf("want 403, got %d", code)
	}
	code, body = asB.call("POST", agentA+"/v1/containers/s/migrate", agent.MigrateRequest{To: testbed.HostB})
	refused("hostB migrating hostA's container", code, body, "hostB may not")
	spec := agent.ContainerSpec{Name: "x", IP: info.IP.Next().Next(), Args: []string{"sleep", "1000"}}
	code, body = asB.call("POST", agentA+"/v1/migrations", agent.PrepareRequest{Spec: spec, From: testbed.HostA})
	refused("hostB staging a migration from hostA", code, body, "only hostA may")
	// A wrong server name: hostB's agent cannot answer for hostA.
	code, body = newCaller(t, tb, id(pki.CLI).ClientConfig(testbed.HostB)).call("GET", agentA+"/v1/health", nil)
	refused("hostA's agent asked as hostB", code, body, "certificate is valid for hostA")

	// A migration hostB really sends here may be acted on by hostB only.
	code, body = asB.call("POST", agentA+"/v1/migrations", agent.PrepareRequest{Spec: spec, From: testbed.HostB})
	if code != 200 {
		t.Fatalf("hostB staging its own migration: %d %s", code, body)
	}
	for _, step := range []string{"commit", "abort", "images"} {
		code, body = cli.call("POST", agentA+"/v1/migrations/x/"+step, nil)
		if code != http.StatusForbidden || !strings.Contains(body, "only hostB may") {
			t.Fatalf("the CLI doing %s of hostB's migration: %d %s", step, code, body)
		}
	}
	code, body = cli.call("POST", agentA+"/v1/migrations/s/handoff", nil)
	if code < 400 {
		t.Fatalf("handoff of a container not leaving: %d %s", code, body)
	}
	if code, body = asB.call("POST", agentA+"/v1/migrations/x/abort", nil); code != 200 {
		t.Fatalf("hostB aborting its migration: %d %s", code, body)
	}
	unchanged("after hostB's abort")

	// The controller: hostB's certificate acting as hostA.
	ctlB := newCaller(t, tb, id(testbed.HostB).ClientConfig(pki.Controller))
	code, body = ctlB.call("POST", ctl+"/v1/names", controller.NameRequest{Name: "y", Host: testbed.HostA})
	refused("hostB reserving a name for hostA", code, body, "hostB may not act for host")
	code, body = ctlB.call("DELETE", ctl+"/v1/names/s?host=hostA", nil)
	refused("hostB releasing hostA's name", code, body, "hostB may not")
	code, body = ctlB.call("PUT", ctl+"/v1/names/s", controller.NameRequest{Name: "s", Host: "client", IP: info.IP.String()})
	refused("hostB moving hostA's name elsewhere", code, body, "hostB may not")
	code, body = ctlB.call("POST", ctl+"/v1/batch", controller.Batch{Ops: []controller.Op{{Op: "move_address", IP: info.IP.String(), Port: "client"}}})
	refused("hostB steering hostA's address", code, body, "hostB may not steer")
	code, body = ctlB.call("POST", ctl+"/v1/batch", controller.Batch{Ops: []controller.Op{{Op: "delete_address", IP: info.IP.String()}}})
	refused("hostB deleting an address", code, body, "may only move addresses")
	code, body = ctlB.call("POST", ctl+"/reinitialize", map[string]any{})
	refused("hostB reinitializing the switch", code, body, "hostB may not")
	// The agents' own steering and registry calls went through all along
	// (the container above was reserved and steered by hostA's agent).

	// --insecure: the seed's endpoints in plain HTTP, and nothing else.
	if code, body = plain.call("GET", testbed.ControllerURL()+"/v1/health", nil); code != 200 {
		t.Fatalf("the seed's plain port: %d %s", code, body)
	}
	code, body = plain.call("POST", testbed.ControllerURL()+"/v1/names", controller.NameRequest{Name: "y", Host: testbed.HostA})
	refused("/v1 writes on the plain port", code, body, "only the seed's endpoints")

	// Finally a migration over TLS and back over the plain listeners.
	if _, err := local.Migrate(ctx, "s", agent.MigrateRequest{To: testbed.HostB}); err != nil {
		t.Fatalf("migration over TLS: %v", err)
	}
	localB := agent.NewClient("unix://"+tb.AgentSocket(testbed.HostB), agent.ClientOptions{Token: tok})
	if _, err := localB.Migrate(ctx, "s", agent.MigrateRequest{To: testbed.HostA, Transport: agent.TransportPlain}); err != nil {
		t.Fatalf("migration over the plain listeners: %v", err)
	}
	if cur, err := local.Get(ctx, "s"); err == nil {
		info.Pid = cur.Pid // restored: a new pid
	}
	unchanged("after two migrations")
	// Secrets on disk are root-only, and no checkpoint image outlived its
	// migration.
	mode := func(p string, want os.FileMode) {
		t.Helper()
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, st.Mode().Perm(), want)
		}
	}
	mode(tb.Dir(), 0o700)
	mode(tb.TokenFile(), 0o600)
	mode(tb.PKIDir(), 0o700)
	keys, _ := filepath.Glob(filepath.Join(tb.PKIDir(), "*"))
	for _, k := range keys {
		mode(k, 0o600)
	}
	for _, h := range testbed.Hosts {
		mode(tb.HostDir(h), 0o700)
		mode(filepath.Join(tb.HostDir(h), "specs"), 0o700)
		mode(filepath.Join(tb.HostDir(h), "agent.log"), 0o600)
		mode(tb.AgentSocket(h), 0o600)
		images := filepath.Join("/dev/shm/containerflow", tb.Prefix+"-"+h)
		mode(images, 0o700)
		left, _ := os.ReadDir(images)
		if len(left) != 0 {
			t.Errorf("checkpoint images left on %s: %v", h, left)
		}
	}
	// Nothing but handshakes failed on the agents' side.
	for _, h := range testbed.Hosts {
		b, _ := os.ReadFile(filepath.Join(tb.HostDir(h), "agent.log"))
		if strings.Contains(string(b), "level=ERROR") {
			t.Errorf("%s's log has errors:\n%s", h, b)
		}
	}
}
