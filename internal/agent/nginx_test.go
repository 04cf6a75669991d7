package agent

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	it "github.com/containerflow/containerflow/internal/image/imagetest"
	"github.com/containerflow/containerflow/internal/runtime"
	"github.com/containerflow/containerflow/internal/testbed"
)

// nginxImage is Debian's nginx with its stock configuration, as an image:
// the packages unpacked, plus what their maintainer scripts would have
// done (the users, the enabled default site, the log and state dirs).
func nginxImage(t *testing.T) string {
	pkgs := []string{"nginx", "nginx-common", "libc6", "libgcc-s1", "libcrypt1", "libpcre2-8-0", "libssl3", "zlib1g"}
	extra := []it.File{
		it.Dir("etc/", 0o755),
		it.Reg("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
		it.Reg("etc/group", "root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\n"),
		it.Dir("etc/nginx/", 0o755), it.Dir("etc/nginx/sites-enabled/", 0o755),
		it.Symlink("etc/nginx/sites-enabled/default", "/etc/nginx/sites-available/default"),
		it.Dir("var/", 0o755), it.Dir("var/log/", 0o755), it.Dir("var/log/nginx/", 0o755),
		it.Dir("var/lib/", 0o755), it.Dir("var/lib/nginx/", 0o755), it.Dir("var/www/", 0o755), it.Dir("var/www/html/", 0o755),
		it.Dir("run/", 0o755), it.Dir("tmp/", 0o1777), it.Dir("proc/", 0o555), it.Dir("sys/", 0o555), it.Dir("dev/", 0o755),
	}
	img := it.Debian(t, pkgs, extra, v1.Config{
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Cmd: []string{"nginx", "-g", "daemon off;"},
	})
	file := filepath.Join(t.TempDir(), "nginx.oci.tar")
	it.WriteOCIArchive(t, img, file, "cflow.test/debian-nginx:1.22")
	return file
}

// Stock nginx from Debian — a master as root, workers as www-data —
// serving a 64 MiB file from a volume, migrated A -> B -> A in the middle
// of a download and between requests on a kept-alive connection: the
// download arrives whole and the connection keeps serving.
func TestStockNginxMigrates(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	f, err := os.Open(nginxImage(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.clients[testbed.HostA].LoadImage(ctx, f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	site := t.TempDir()
	if err := os.Chmod(site, 0o755); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 64<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(big)
	if err := os.WriteFile(filepath.Join(site, "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(site, "index.html"), []byte("hello from nginx\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("198.18.0.13")
	e.runOn(testbed.HostA, ContainerSpec{Name: "nginx", IP: ip, Image: "cflow.test/debian-nginx:1.22",
		Volumes: []runtime.Volume{{Source: site, Target: "/var/www/html", ReadOnly: true}}})

	keep := newHTTPConn(t, e.dial(ip.String()+":80"))
	keep.get("/index.html", "hello from nginx\n")
	checkWorkers(t, e, testbed.HostA)

	// A download read at about 16 MiB/s: 4 s, two migrations inside it.
	dl := e.dial(ip.String() + ":80")
	defer dl.Close()
	fmt.Fprintf(dl, "GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	got := make(chan [32]byte, 1)
	errc := make(chan error, 1)
	go func() {
		rd := bufio.NewReader(dl)
		resp, err := http.ReadResponse(rd, nil)
		if err != nil {
			errc <- err
			return
		}
		h := sha256.New()
		buf := make([]byte, 256<<10)
		for {
			_ = dl.SetReadDeadline(time.Now().Add(20 * time.Second))
			n, err := resp.Body.Read(buf)
			h.Write(buf[:n])
			if err == io.EOF {
				break
			}
			if err != nil {
				errc <- err
				return
			}
			time.Sleep(15 * time.Millisecond)
		}
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		got <- sum
	}()
	time.Sleep(500 * time.Millisecond)
	from := testbed.HostA
	for _, to := range []string{testbed.HostB, testbed.HostA} {
		res, err := e.clients[from].Migrate(ctx, "nginx", MigrateRequest{To: to})
		if err != nil {
			t.Fatalf("migrate %s->%s: %v", from, to, err)
		}
		t.Logf("%s->%s: time to ready %.0f ms, checkpoint %.1f MB, image staged %d bytes in %.0f ms",
			from, to, res.Record.TimeToReadyMs, float64(res.Record.CheckpointB)/1e6, res.Record.ImageStageB, res.Record.ImageStageMs)
		keep.get("/index.html", "hello from nginx\n")
		checkWorkers(t, e, to)
		from = to
		time.Sleep(500 * time.Millisecond)
	}
	select {
	case sum := <-got:
		if sum != want {
			t.Fatal("the 64 MiB download arrived changed")
		}
	case err := <-errc:
		t.Fatalf("download: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("download did not finish")
	}
}

// checkWorkers finds nginx's workers (the master's children) on host and
// checks they run as www-data.
func checkWorkers(t *testing.T, e *env, host string) {
	t.Helper()
	info, err := e.clients[host].Get(context.Background(), "nginx")
	if err != nil {
		t.Fatal(err)
	}
	// A worker is root between its fork and its setuid: under load, one
	// that served nothing yet can be seen there. Every worker must drop
	// to www-data within a few seconds.
	deadline := time.Now().Add(5 * time.Second)
	for {
		bad := rootWorkers(t, info.Pid, host)
		if bad == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(bad)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rootWorkers says which of nginx master's workers do not run as www-data.
func rootWorkers(t *testing.T, master int, host string) string {
	kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", master, master))
	if err != nil {
		t.Fatal(err)
	}
	workers := strings.Fields(string(kids))
	if len(workers) == 0 {
		return fmt.Sprintf("nginx master %d on %s has no workers", master, host)
	}
	for _, w := range workers {
		pid, _ := strconv.Atoi(w)
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return err.Error()
		}
		if l := grepLine(string(status), "Uid:"); l != "Uid:\t33\t33\t33\t33" {
			return fmt.Sprintf("worker %d on %s: %q, want www-data (33)", pid, host, l)
		}
	}
	return ""
}

// httpConn sends requests on one kept-alive connection.
type httpConn struct {
	t  *testing.T
	c  net.Conn
	rd *bufio.Reader
}

func newHTTPConn(t *testing.T, c net.Conn) *httpConn {
	t.Cleanup(func() { c.Close() })
	return &httpConn{t: t, c: c, rd: bufio.NewReader(c)}
}

func (h *httpConn) get(path, want string) {
	h.t.Helper()
	_ = h.c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := fmt.Fprintf(h.c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path); err != nil {
		h.t.Fatalf("GET %s: %v", path, err)
	}
	resp, err := http.ReadResponse(h.rd, nil)
	if err != nil {
		h.t.Fatalf("GET %s: %v", path, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || string(b) != want || resp.Close {
		h.t.Fatalf("GET %s: %d %q close=%v %v", path, resp.StatusCode, b, resp.Close, err)
	}
}
