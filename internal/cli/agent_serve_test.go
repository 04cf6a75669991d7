package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/containerflow/containerflow/internal/audit"
	"github.com/containerflow/containerflow/internal/image"
)

// TestMain lets the test binary run as cflow itself (CFLOW_TEST_AS_CLI=1),
// so that a test can start a real agent process and signal it.
func TestMain(m *testing.M) {
	if os.Getenv("CFLOW_TEST_AS_CLI") == "1" {
		os.Exit(Execute())
	}
	os.Exit(m.Run())
}

// TestAgentServeHardening runs `cflow agent serve` as a process: a JSON
// body past the limit gets 413; SIGTERM during an image upload lets the
// upload finish and be answered before the agent exits; both writes are
// in the audit log, which only root can read.
func TestAgentServeHardening(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the agent needs root (CRIU, runc state)")
	}
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	state := filepath.Join(dir, "state")
	cmd := exec.Command(os.Args[0], "agent", "serve", "--name", "hz", "--insecure", "--listen", addr, "--state-dir", state,
		"--images-dir", filepath.Join(dir, "ckpt"), "--netns-prefix", "cfhz-", "--no-auth", "--uplink", "lo")
	cmd.Env = append(os.Environ(), "CFLOW_TEST_AS_CLI=1")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("agent output:\n%s", logs.String())
		}
	}()
	base := "http://" + addr
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(base + "/v1/health"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("agent did not come up")
		}
	}

	big := `{"name":"x","args":["` + strings.Repeat("a", 2<<20) + `"]}`
	resp, err := http.Post(base+"/v1/containers", "application/json", strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized JSON: %d, want 413", resp.StatusCode)
	}

	archive := filepath.Join(dir, "app.tar")
	if err := image.BuildArchive(archive, "hz/app:1", nil, v1.Config{Cmd: []string{"/bin/true"}}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	answer := make(chan *http.Response, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/images", pr)
		req.ContentLength = int64(len(data))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("upload: %v", err)
			answer <- nil
			return
		}
		answer <- resp
	}()
	half := len(data) / 2
	if _, err := pw.Write(data[:half]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the request is in the handler
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	select {
	case err := <-exited:
		t.Fatalf("agent exited with an upload in flight: %v", err)
	default:
	}
	if _, err := pw.Write(data[half:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	resp = <-answer
	if resp == nil {
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload across SIGTERM: %d %s", resp.StatusCode, body)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("agent exit: %v", err)
		}
		exited <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("agent still running 10 s after its last request")
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("agent still accepting after SIGTERM")
	}

	p := filepath.Join(state, "audit.log")
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("audit log mode %v", fi.Mode())
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var es []audit.Entry
	for sc := bufio.NewScanner(f); sc.Scan(); {
		var e audit.Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		es = append(es, e)
	}
	if len(es) != 2 || es[0].Path != "/v1/containers" || es[0].Status != 413 || es[0].Error == "" ||
		es[1].Path != "/v1/images" || es[1].Status != 201 || !strings.HasPrefix(es[1].Who.Peer, "127.0.0.1:") {
		t.Fatalf("audit log: %+v", es)
	}
}
