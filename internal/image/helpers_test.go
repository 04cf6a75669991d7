package image

import (
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	it "github.com/containerflow/containerflow/internal/image/imagetest"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to keep image file owners, make device nodes and mount")
	}
}

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// twoLayer is an image whose upper layer deletes a file of the lower one
// (whiteout), replaces a directory's content (opaque whiteout) and links
// to a lower file before that file appears in the flattened stream.
func twoLayer(t *testing.T) v1.Image {
	lower := it.Layer(t,
		it.Dir("etc/", 0o755),
		it.WithXattr(it.WithMode(it.Owned(it.Reg("etc/keep", "kept\n"), 1000, 1001), 0o640), "user.cflow", "x"),
		it.Reg("etc/gone", "deleted by the upper layer\n"),
		it.Dir("data/", 0o750),
		it.Reg("data/old1", "old\n"),
		it.Dir("data/sub/", 0o755),
		it.Reg("data/sub/old2", "old\n"),
		it.Dir("bin/", 0o755),
		it.WithMode(it.Reg("bin/suid", "#!/bin/sh\n"), 0o4755),
		it.Symlink("etc/link", "keep"),
		it.Symlink("abs", "/etc/keep"),
		it.Symlink("escape", "/etc"),
		it.Reg("etc/passwd", "image passwd\n"),
		it.Hardlink("etc/hard", "etc/keep"),
		it.CharDev("dev/null", 1, 3),
		it.Dir("tmp/", 0o1777),
	)
	upper := it.Layer(t,
		it.Dir("etc/", 0o755),
		it.Whiteout("etc/gone"),
		it.Reg("etc/added", "added\n"),
		it.Hardlink("etc/hard2", "etc/keep"),
		it.Dir("data/", 0o750),
		it.OpaqueWhiteout("data"),
		it.Owned(it.Reg("data/new", "new\n"), 33, 33),
		// A hard link through an absolute symlink: it must link the
		// rootfs's etc/passwd, never the host's.
		it.Hardlink("stolen", "escape/passwd"),
	)
	return it.Image(t, v1.Config{Env: []string{"A=1"}, Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"echo hi"}, WorkingDir: "/data", User: "1000:1001"}, lower, upper)
}

// assertEmpty checks that a store holds no image, no ref and no temp dir.
func assertEmpty(t *testing.T, s *Store) {
	t.Helper()
	for _, d := range []string{"sha256", "tmp"} {
		ents, err := os.ReadDir(filepath.Join(s.Dir(), d))
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 0 {
			t.Errorf("%s/ not empty after a failed load: %v", d, ents)
		}
	}
	ix, err := s.readIndex()
	if err != nil {
		t.Fatal(err)
	}
	if len(ix.Refs) != 0 {
		t.Errorf("refs left: %v", ix.Refs)
	}
}
