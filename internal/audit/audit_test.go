package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/httpserve"
)

func readEntries(t *testing.T, p string) []Entry {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var es []Entry
	for sc := bufio.NewScanner(f); sc.Scan(); {
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("%q: %v", sc.Text(), err)
		}
		es = append(es, e)
	}
	return es
}

// Writes are logged, successes and failures alike, with who (peer uid on
// a unix socket, token fingerprint), the route's resource, the status and
// the error; reads are not.
func TestAuditOverUnixSocket(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(filepath.Join(dir, "state", "audit.log"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/containers/{name}/signal", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error":"no container ` + r.PathValue("name") + `"}`))
	})
	mux.HandleFunc("POST /v1/containers", func(w http.ResponseWriter, r *http.Request) {
		Note(r.Context(), "name", "web")
		w.WriteHeader(http.StatusCreated)
	})
	mux.HandleFunc("GET /v1/containers", func(w http.ResponseWriter, r *http.Request) {})
	sock := filepath.Join(dir, "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- httpserve.Serve(ctx, httpserve.New(l.Handler(mux)), time.Second, "test", ln) }()
	defer func() { cancel(); <-done }()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	for _, r := range []struct{ method, path, token string }{
		{"POST", "/v1/containers/web/signal", "secret"},
		{"GET", "/v1/containers", ""},
		{"POST", "/v1/containers", ""},
		{"DELETE", "/v1/nothing", ""},
	} {
		req, _ := http.NewRequest(r.method, "http://agent"+r.path, strings.NewReader("{}"))
		if r.token != "" {
			req.Header.Set("Authorization", "Bearer "+r.token)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	fi, err := os.Stat(l.Path())
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("audit file: %v %v", fi, err)
	}
	es := readEntries(t, l.Path())
	if len(es) != 3 {
		t.Fatalf("entries: %+v", es)
	}
	e := es[0]
	if e.Method != "POST" || e.Route != "POST /v1/containers/{name}/signal" || e.Resource["name"] != "web" ||
		e.Status != 404 || e.Error != "no container web" || !strings.HasPrefix(e.Who.Peer, "unix:uid=0,pid=") ||
		!strings.HasPrefix(e.Who.Token, "sha256:") || strings.Contains(e.Who.Token, "secret") {
		t.Errorf("signal entry: %+v", e)
	}
	if es[1].Status != 201 || es[1].Resource["name"] != "web" || es[1].Who.Token != "" {
		t.Errorf("create entry: %+v", es[1])
	}
	if es[2].Method != "DELETE" || es[2].Status != 405 && es[2].Status != 404 {
		t.Errorf("unknown route entry: %+v", es[2])
	}
}

// The log rotates by size and keeps Keep old files.
func TestAuditRotates(t *testing.T) {
	p := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(p, 1000)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 0; i < 100; i++ {
		if err := l.Write(Entry{Method: "POST", Path: "/v1/x", Status: 200}); err != nil {
			t.Fatal(err)
		}
	}
	for i, name := range []string{"audit.log", "audit.log.1", "audit.log.2", "audit.log.3"} {
		fi, err := os.Stat(filepath.Join(filepath.Dir(p), name))
		if err != nil || fi.Size() > 1000 || fi.Mode().Perm() != 0o600 {
			t.Errorf("%d %s: %v %v", i, name, fi, err)
		}
	}
	if _, err := os.Stat(p + ".4"); err == nil {
		t.Error("more than Keep old files")
	}
}
