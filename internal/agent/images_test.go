package agent

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerflow/containerflow/internal/criu"
	"github.com/containerflow/containerflow/internal/image/imagetest"
	"github.com/containerflow/containerflow/internal/testbed/tbtest"
)

// imageAgents starts two agents in this process, each serving its API on
// a loopback test server; the image API needs no testbed.
func imageAgents(t *testing.T) (map[string]*Agent, map[string]*Client) {
	t.Helper()
	tbtest.RequireRoot(t, "an agent (runc state, image file owners)")
	if _, _, err := criu.Find(context.Background()); err != nil {
		t.Skipf("an agent needs CRIU: %v", err)
	}
	agents, clients, peers := map[string]*Agent{}, map[string]*Client{}, map[string]string{}
	servers := map[string]*httptest.Server{}
	for _, h := range []string{"hostA", "hostB"} {
		servers[h] = httptest.NewUnstartedServer(nil)
		peers[h] = "http://" + servers[h].Listener.Addr().String()
	}
	prefix := tbtest.Prefix("i")
	for _, h := range []string{"hostA", "hostB"} {
		a, err := New(Config{Name: h, StateDir: t.TempDir(), ImagesDir: t.TempDir(), NetnsPrefix: prefix + "-" + h + "-",
			Uplink: "lo", Peers: peers, Token: "test-token"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		servers[h].Config.Handler = a.Handler()
		servers[h].Start()
		t.Cleanup(servers[h].Close)
		agents[h], clients[h] = a, NewClient(peers[h], ClientOptions{Token: "test-token"})
	}
	return agents, clients
}

func TestImageAPI(t *testing.T) {
	agents, clients := imageAgents(t)
	ctx := context.Background()
	a := clients["hostA"]
	archive := imagetest.BuildBusybox(t, t.TempDir(), nil)
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := a.LoadImage(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Refs) != 1 || img.Refs[0] != imagetest.BusyboxRef {
		t.Errorf("loaded %+v", img)
	}
	if l, err := a.Images(ctx); err != nil || len(l) != 1 || l[0].Digest != img.Digest {
		t.Errorf("Images: %+v, %v", l, err)
	}
	if got, err := a.Image(ctx, imagetest.BusyboxRef); err != nil || got.Digest != img.Digest {
		t.Errorf("Image by ref: %+v, %v", got, err)
	}
	var buf bytes.Buffer
	if n, err := a.ExportImage(ctx, img.Digest, &buf); err != nil || n != img.ArchiveSize {
		t.Errorf("export: %d bytes (ArchiveSize %d), %v", n, img.ArchiveSize, err)
	}

	// Pre-staging: hostA sends the image to hostB, once.
	n, err := agents["hostA"].PushImage(ctx, "hostB", img.Digest)
	if err != nil || n != img.ArchiveSize {
		t.Fatalf("push: %d bytes (ArchiveSize %d), %v", n, img.ArchiveSize, err)
	}
	if n, err := agents["hostA"].PushImage(ctx, "hostB", img.Digest); err != nil || n != 0 {
		t.Errorf("second push sent %d bytes, %v; want none", n, err)
	}
	stagedStore, err := agents["hostB"].ImageStore()
	if err != nil {
		t.Fatal(err)
	}
	staged, err := stagedStore.Get(img.Digest)
	if staged.Digest != img.Digest || len(staged.Refs) != 1 {
		t.Errorf("staged %+v", staged)
	}
	lower, err := agents["hostB"].imagesLower(staged.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(lower, "bin", "busybox")); err != nil {
		t.Errorf("staged rootfs: %v", err)
	}

	// Errors: unknown ref, not an image, no token.
	var apiErr *APIError
	if _, err := a.Image(ctx, "cflow.test/nope:1"); !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
		t.Errorf("unknown ref: %v", err)
	}
	if _, err := a.LoadImage(ctx, bytes.NewReader(bytes.Repeat([]byte{0x5a}, 3000))); !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest ||
		strings.Contains(err.Error(), "image-upload") {
		t.Errorf("random bytes: %v", err)
	}
	anon := NewClient(a.base, ClientOptions{})
	if _, err := anon.RemoveImage(ctx, imagetest.BusyboxRef); !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnauthorized {
		t.Errorf("remove without token: %v", err)
	}

	if _, err := a.RemoveImage(ctx, imagetest.BusyboxRef); err != nil {
		t.Fatal(err)
	}
	if l, err := a.Images(ctx); err != nil || len(l) != 0 {
		t.Errorf("after remove: %+v, %v", l, err)
	}
	s, _ := agents["hostA"].ImageStore()
	for _, d := range []string{"sha256", "tmp"} {
		if ents, _ := os.ReadDir(filepath.Join(s.Dir(), d)); len(ents) != 0 {
			t.Errorf("%s/ left: %v", d, ents)
		}
	}
	if ups, _ := filepath.Glob(filepath.Join(agents["hostA"].cfg.StateDir, "image-upload-*")); len(ups) != 0 {
		t.Errorf("uploads left: %v", ups)
	}
}

func (a *Agent) imagesLower(digest string) (string, error) {
	s, err := a.ImageStore()
	if err != nil {
		return "", err
	}
	return s.RootfsLayers(digest)
}
