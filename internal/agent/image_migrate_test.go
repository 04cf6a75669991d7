package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/image/imagetest"
	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/workload/stream"
)

// A container from a locally built image migrates A -> B -> A: hostB,
// which lacks the image, gets it before the freeze (and only then), the
// changes the container made to its root — a file written, a file of the
// image deleted — travel with it, and its stream loses nothing.
func TestImageContainerMigrates(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	archive := imagetest.BuildBusybox(t, t.TempDir(), map[string]string{"/opt/app/cflow": imagetest.StaticCflow(t)})
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	img, err := e.clients[testbed.HostA].LoadImage(ctx, f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("198.18.0.12")
	script := "echo written-in-A > /etc/written; rm /etc/hostname; mkdir -p /var/data; " +
		"exec /opt/app/cflow workload stream-server --listen :9000"
	e.runOn(testbed.HostA, ContainerSpec{Name: "img", IP: ip, Image: imagetest.BusyboxRef, Args: []string{"/bin/sh", "-c", script}})
	var conn *stream.Conn
	deadline := time.Now().Add(10 * time.Second)
	for conn == nil {
		c, err := e.tb.Dial(testbed.Client, "tcp4", ip.String()+":9000", time.Second)
		if err == nil {
			conn = stream.Start(c, 5*time.Millisecond, 20*time.Millisecond)
		} else if time.Now().After(deadline) {
			t.Fatal(err)
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	defer conn.Stop(context.Background(), time.Second)
	time.Sleep(200 * time.Millisecond)

	var apiErr *APIError
	if _, err := e.clients[testbed.HostA].RemoveImage(ctx, img.Digest); !errors.As(err, &apiErr) || apiErr.Status != http.StatusConflict {
		t.Errorf("removing the image of a running container: %v", err)
	}
	from := testbed.HostA
	for i, to := range []string{testbed.HostB, testbed.HostA} {
		res, err := e.clients[from].Migrate(ctx, "img", MigrateRequest{To: to})
		if err != nil {
			t.Fatalf("migrate %s->%s: %v", from, to, err)
		}
		r := res.Record
		t.Logf("%s->%s: image staged %d bytes in %.0f ms; time to ready %.0f ms", from, to, r.ImageStageB, r.ImageStageMs, r.TimeToReadyMs)
		if first := i == 0; first != (r.ImageStageB > 0) || (r.ImageStageB > 0) != (r.ImageStageMs > 0) {
			t.Errorf("move %d: staged %d bytes in %.1f ms; only the first move, to a host without the image, sends it", i+1, r.ImageStageB, r.ImageStageMs)
		}
		info, err := e.clients[to].Get(ctx, "img")
		if err != nil {
			t.Fatal(err)
		}
		if info.ImageDigest != img.Digest {
			t.Errorf("on %s the container runs from %q, want %s", to, info.ImageDigest, img.Digest)
		}
		root := fmt.Sprintf("/proc/%d/root", info.Pid)
		if b, err := os.ReadFile(filepath.Join(root, "etc/written")); err != nil || string(b) != "written-in-A\n" {
			t.Errorf("on %s the file written on hostA reads %q, %v", to, b, err)
		}
		if _, err := os.Stat(filepath.Join(root, "etc/hostname")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("on %s the file deleted from the image is back: %v", to, err)
		}
		if _, err := os.Stat(filepath.Join(root, "bin/busybox")); err != nil {
			t.Errorf("on %s the image's files are missing: %v", to, err)
		}
		time.Sleep(200 * time.Millisecond)
		from = to
	}
	st := conn.Stop(ctx, 2*time.Second)
	if st.Dropped || st.Echo.Lost+st.Server.Lost+st.Echo.Duplicated+st.Server.Duplicated > 0 || st.Echo.Received == 0 {
		t.Errorf("stream across the moves: %+v", st)
	}
	if _, err := e.clients[testbed.HostB].Image(ctx, img.Digest); err != nil {
		t.Errorf("hostB no longer has the image it was sent: %v", err)
	}
}
