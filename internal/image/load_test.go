package image

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	it "github.com/containerflow/containerflow/internal/image/imagetest"
)

func TestLoadFormatsFlattenAndKeepMetadata(t *testing.T) {
	requireRoot(t)
	img := twoLayer(t)
	dir := t.TempDir()
	layoutDir := filepath.Join(dir, "layout")
	it.WriteLayout(t, img, layoutDir, "cflow.test/two:1")
	ociTar := filepath.Join(dir, "two.oci.tar")
	it.WriteOCIArchive(t, img, ociTar, "cflow.test/two:1")
	dockerTar := filepath.Join(dir, "two.docker.tar")
	it.WriteDockerArchive(t, img, dockerTar, "cflow.test/two:1")

	want, _ := img.ConfigName()
	for _, src := range []string{layoutDir, ociTar, dockerTar} {
		t.Run(filepath.Base(src), func(t *testing.T) {
			s := openStore(t)
			got, err := s.Load(context.Background(), src)
			if err != nil {
				t.Fatal(err)
			}
			if got.Digest != want.String() {
				t.Errorf("digest %s, want the config digest %s", got.Digest, want)
			}
			if len(got.Refs) != 1 || got.Refs[0] != "cflow.test/two:1" {
				t.Errorf("refs %v", got.Refs)
			}
			c := got.Config
			if c.WorkingDir != "/data" || c.User != "1000:1001" || len(c.Env) != 1 || strings.Join(c.Command(nil), " ") != "/bin/sh -c echo hi" {
				t.Errorf("config %+v", c)
			}
			if got.Layers != 2 || got.Size == 0 || got.ArchiveSize == 0 || !got.Created.Equal(it.Epoch) {
				t.Errorf("metadata %+v", got)
			}
			lower, err := s.RootfsLayers(got.Digest)
			if err != nil {
				t.Fatal(err)
			}
			checkRootfs(t, lower)
			tmp, _ := os.ReadDir(filepath.Join(s.Dir(), "tmp"))
			if len(tmp) != 0 {
				t.Errorf("temp dirs left: %v", tmp)
			}
		})
	}
}

func checkRootfs(t *testing.T, root string) {
	t.Helper()
	p := func(n string) string { return filepath.Join(root, n) }
	for _, gone := range []string{"etc/gone", "etc/.wh.gone", "data/old1", "data/sub", "data/.wh..wh..opq"} {
		if _, err := os.Lstat(p(gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s should be gone: %v", gone, err)
		}
	}
	for _, f := range []string{"etc/added", "data/new", "etc/keep"} {
		if _, err := os.Stat(p(f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	stat := func(n string) unix.Stat_t {
		var st unix.Stat_t
		if err := unix.Lstat(p(n), &st); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		return st
	}
	if st := stat("etc/keep"); st.Uid != 1000 || st.Gid != 1001 || st.Mode&0o7777 != 0o640 || st.Nlink != 3 {
		t.Errorf("etc/keep: uid %d gid %d mode %o nlink %d, want 1000 1001 0640 3 (two hard links)", st.Uid, st.Gid, st.Mode&0o7777, st.Nlink)
	}
	if st := stat("data/new"); st.Uid != 33 || st.Gid != 33 {
		t.Errorf("data/new owner %d:%d", st.Uid, st.Gid)
	}
	if st := stat("data"); st.Mode&0o7777 != 0o750 {
		t.Errorf("data mode %o", st.Mode&0o7777)
	}
	if st := stat("bin/suid"); st.Mode&0o7777 != 0o4755 {
		t.Errorf("bin/suid mode %o, want 4755", st.Mode&0o7777)
	}
	if st := stat("tmp"); st.Mode&0o7777 != 0o1777 {
		t.Errorf("tmp mode %o, want 1777", st.Mode&0o7777)
	}
	if st := stat("dev/null"); st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
		t.Errorf("dev/null: mode %o rdev %d:%d", st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	if st := stat("etc/keep"); st.Mtim.Sec != it.Epoch.Unix() {
		t.Errorf("etc/keep mtime %d, want %d", st.Mtim.Sec, it.Epoch.Unix())
	}
	if st := stat("etc"); st.Mtim.Sec != it.Epoch.Unix() {
		t.Errorf("etc mtime %d, want %d (directory times are set last)", st.Mtim.Sec, it.Epoch.Unix())
	}
	for link, target := range map[string]string{"etc/link": "keep", "abs": "/etc/keep", "escape": "/etc"} {
		if got, err := os.Readlink(p(link)); err != nil || got != target {
			t.Errorf("%s -> %q, %v; want %q", link, got, err, target)
		}
	}
	if b, err := os.ReadFile(p("stolen")); err != nil || string(b) != "image passwd\n" {
		t.Errorf("a hard link through the /etc symlink should link the rootfs's etc/passwd: %q, %v", b, err)
	}
	buf := make([]byte, 8)
	if n, err := unix.Lgetxattr(p("etc/keep"), "user.cflow", buf); err != nil && !errors.Is(err, unix.ENOTSUP) {
		t.Errorf("xattr: %v", err)
	} else if err == nil && string(buf[:n]) != "x" {
		t.Errorf("xattr user.cflow = %q", buf[:n])
	}
}

func TestLoadCorruptLayerLeavesNothing(t *testing.T) {
	requireRoot(t)
	img := twoLayer(t)
	dir := t.TempDir()
	layoutDir := filepath.Join(dir, "layout")
	it.WriteLayout(t, img, layoutDir, "cflow.test/two:1")
	layers, _ := img.Layers()
	h, _ := layers[1].Digest()
	blob := filepath.Join(layoutDir, "blobs", h.Algorithm, h.Hex)
	b, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(blob, b, 0o644); err != nil {
		t.Fatal(err)
	}
	ociTar := filepath.Join(dir, "corrupt.oci.tar")
	if err := it.TarDir(layoutDir, ociTar); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{layoutDir, ociTar} {
		s := openStore(t)
		_, err := s.Load(context.Background(), src)
		if !errors.Is(err, ErrBadImage) || !strings.Contains(err.Error(), h.String()) {
			t.Errorf("%s: err %v, want ErrBadImage naming layer %s", src, err, h)
		}
		t.Logf("%s: %v", filepath.Base(src), err)
		assertEmpty(t, s)
	}
}

// cancelAfter is a context that reports cancellation from its n-th Err
// call on, which stops a load at a chosen point without timing races.
type cancelAfter struct {
	context.Context
	n int
}

func (c *cancelAfter) Err() error {
	if c.n--; c.n < 0 {
		return context.Canceled
	}
	return nil
}

func TestLoadCancelledLeavesNothing(t *testing.T) {
	requireRoot(t)
	src := filepath.Join(t.TempDir(), "two.oci.tar")
	it.WriteOCIArchive(t, twoLayer(t), src, "cflow.test/two:1")
	// A load that goes through tells how often it asks Err; cancelling
	// at points spread over that covers copying the archive and the
	// blobs, verifying and unpacking.
	count := &cancelAfter{Context: context.Background(), n: 1 << 30}
	if _, err := openStore(t).Load(count, src); err != nil {
		t.Fatal(err)
	}
	total := 1<<30 - count.n
	t.Logf("a load checks its context %d times", total)
	for n := 0; n < total; n += 1 + total/12 {
		s := openStore(t)
		_, err := s.Load(&cancelAfter{Context: context.Background(), n: n}, src)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled after %d checks: err %v, want context.Canceled", n, err)
		}
		assertEmpty(t, s)
	}
}

func TestLoadBadInput(t *testing.T) {
	dir := t.TempDir()
	random := filepath.Join(dir, "random")
	b := make([]byte, 4096)
	for i := range b {
		b[i] = byte(i*7919 + i/13)
	}
	if err := os.WriteFile(random, b, 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	plainDir := t.TempDir()
	notImage := filepath.Join(dir, "notimage.tar")
	if err := os.WriteFile(filepath.Join(plainDir, "hello"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := it.TarDir(plainDir, notImage); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		path string
		want error
	}{
		"missing":      {filepath.Join(dir, "nope.tar"), os.ErrNotExist},
		"random bytes": {random, ErrBadImage},
		"empty file":   {empty, ErrBadImage},
		"plain dir":    {plainDir, ErrBadImage},
		"plain tar":    {notImage, ErrBadImage},
	} {
		s := openStore(t)
		_, err := s.Load(context.Background(), tc.path)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", name, err, tc.want)
		}
		t.Logf("%s: %v", name, err)
		assertEmpty(t, s)
	}
}

func TestLoadRejectsTraversal(t *testing.T) {
	requireRoot(t)
	img := it.Image(t, v1.Config{}, it.Layer(t, it.Reg("ok", "fine"), it.Reg("../../../../cflow-traversal", "escaped")))
	src := filepath.Join(t.TempDir(), "evil.oci.tar")
	it.WriteOCIArchive(t, img, src, "cflow.test/evil:1")
	s := openStore(t)
	_, err := s.Load(context.Background(), src)
	if err == nil {
		t.Fatal("an image with a ../ entry loaded")
	}
	t.Log(err)
	assertEmpty(t, s)
	for _, p := range []string{"/cflow-traversal", filepath.Join(filepath.Dir(s.Dir()), "cflow-traversal")} {
		if _, err := os.Lstat(p); err == nil {
			os.Remove(p)
			t.Errorf("%s written outside the store", p)
		}
	}
}
