package pki

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFilesAreRootOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	if err := InitCA(dir); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(CACertPath(dir))
	if err := InitCA(dir); err != nil { // kept, not replaced
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(CACertPath(dir)); string(after) != string(before) {
		t.Fatal("a second InitCA replaced the CA")
	}
	if _, _, err := Issue(dir, "hostA", []string{"198.19.0.11"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Issue(dir, "../x", nil); err == nil {
		t.Fatal("a name with a slash was issued")
	}
	st, _ := os.Stat(dir)
	if st.Mode().Perm() != 0o700 {
		t.Fatalf("dir %v", st.Mode())
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		fi, _ := e.Info()
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v", e.Name(), fi.Mode())
		}
	}
	if len(ents) != 4 {
		t.Fatalf("files %v", ents)
	}
}

// A real TLS server on loopback and the faults a client can bring: every
// refusal must happen in the handshake, before a request is read.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	other := t.TempDir()
	for _, d := range []string{dir, other} {
		if err := InitCA(d); err != nil {
			t.Fatal(err)
		}
	}
	issue := func(d, name string) *Identity {
		if _, _, err := Issue(d, name, []string{"127.0.0.1"}); err != nil {
			t.Fatal(err)
		}
		id, err := Load(d, name)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	srvID := issue(dir, "hostB")
	seen := make(chan string, 10)
	l, err := tls.Listen("tcp", "127.0.0.1:0", srvID.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- PeerName(r.TLS)
		_, _ = io.WriteString(w, "ok")
	})}
	go srv.Serve(l) //nolint:errcheck
	t.Cleanup(func() { srv.Close() })
	url := "https://" + l.Addr().String() + "/"
	get := func(cfg *tls.Config) error {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 5 * time.Second}
		resp, err := hc.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}

	cli := issue(dir, "cli")
	if err := get(cli.ClientConfig("hostB")); err != nil {
		t.Fatal(err)
	}
	if got := <-seen; got != "cli" {
		t.Fatalf("peer name %q", got)
	}
	// The server is hostB: a client that wants hostA refuses it.
	if err := get(cli.ClientConfig("hostA")); err == nil || !strings.Contains(err.Error(), "certificate is valid for") {
		t.Fatalf("wrong server name: %v", err)
	}
	// A client certificate of another CA.
	stranger := issue(other, "cli")
	strangerCfg := stranger.ClientConfig("hostB")
	strangerCfg.RootCAs = cli.Pool
	if err := get(strangerCfg); err == nil || !strings.Contains(err.Error(), "unknown certificate authority") {
		t.Fatalf("a certificate of another CA: %v", err)
	}
	// An expired client certificate.
	ca, _ := LoadCA(dir)
	cp, kp, _ := ca.Issue("hostA", nil, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	old, _ := FromPEM("hostA", ca.PEM, cp, kp)
	if err := get(old.ClientConfig("hostB")); err == nil || !strings.Contains(err.Error(), "expired certificate") {
		t.Fatalf("an expired certificate: %v", err)
	}
	// No client certificate at all.
	if err := get(&tls.Config{RootCAs: cli.Pool, ServerName: "hostB", MinVersion: tls.VersionTLS13}); err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Fatalf("a client without a certificate: %v", err)
	}
	// TLS 1.2 only.
	tls12 := cli.ClientConfig("hostB")
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	if err := get(tls12); err == nil || !strings.Contains(err.Error(), "protocol version not supported") {
		t.Fatalf("TLS 1.2: %v", err)
	}
	// Plain HTTP to the TLS port.
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(c)
	c.Close()
	if strings.Contains(string(b), "ok") || !strings.Contains(string(b), "400") {
		t.Fatalf("plain HTTP answered %q", b)
	}
	select {
	case n := <-seen:
		t.Fatalf("a refused client reached the handler as %q", n)
	default:
	}
}
