package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	it "github.com/containerflow/containerflow/internal/image/imagetest"
)

// FuzzLoad feeds Store.Load arbitrary archives, seeded with real ones (a
// docker-archive, the same gzipped, an OCI archive). It must not panic,
// must leave nothing behind in the store when it fails (no image, ref or
// temp dir), and must not write beside the store. Blob digests are
// verified before anything is unpacked, so mutations mostly exercise the
// archive and manifest parsing: the part that reads untrusted bytes before
// any digest vouches for them.
func FuzzLoad(f *testing.F) {
	img := it.Image(f, v1.Config{Cmd: []string{"/bin/sh"}}, it.Layer(f,
		it.Dir("etc/", 0o755), it.Reg("etc/hostname", "fuzz\n"), it.Symlink("etc/link", "/etc/hostname")))
	dir := f.TempDir()
	docker, oci := filepath.Join(dir, "docker.tar"), filepath.Join(dir, "oci.tar")
	it.WriteDockerArchive(f, img, docker, "fuzz/app:1")
	it.WriteOCIArchive(f, img, oci, "fuzz/app:1")
	for _, p := range []string{docker, oci} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		if p == docker {
			var z bytes.Buffer
			zw := gzip.NewWriter(&z)
			_, _ = zw.Write(b)
			_ = zw.Close()
			f.Add(z.Bytes())
		}
	}
	top := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		work, err := os.MkdirTemp(top, "it")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(work)
		archive := filepath.Join(work, "archive.tar")
		if err := os.WriteFile(archive, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(filepath.Join(work, "store"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Load(context.Background(), archive); err != nil {
			assertEmpty(t, s)
		}
		ents, _ := os.ReadDir(work)
		if len(ents) != 2 {
			t.Fatalf("Load wrote beside the store: %v", ents)
		}
	})
}
