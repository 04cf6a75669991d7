package image

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	it "github.com/containerflow/containerflow/internal/image/imagetest"
)

func TestRefsGetRemove(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	a := it.Image(t, v1.Config{Cmd: []string{"a"}}, it.Layer(t, it.Reg("a", "a")))
	b := it.Image(t, v1.Config{Cmd: []string{"b"}}, it.Layer(t, it.Reg("b", "b")))
	it.WriteOCIArchive(t, a, filepath.Join(dir, "a.tar"), "cflow.test/a:1")
	it.WriteDockerArchive(t, a, filepath.Join(dir, "a2.tar"), "cflow.test/a:2")
	it.WriteDockerArchive(t, b, filepath.Join(dir, "b.tar"), "cflow.test/b:latest")
	s := openStore(t)
	ctx := context.Background()
	ia, err := s.Load(ctx, filepath.Join(dir, "a.tar"))
	if err != nil {
		t.Fatal(err)
	}
	ib, err := s.Load(ctx, filepath.Join(dir, "b.tar"))
	if err != nil {
		t.Fatal(err)
	}
	// The same image again under another name: no unpack, one more ref.
	ia2, err := s.Load(ctx, filepath.Join(dir, "a2.tar"))
	if err != nil {
		t.Fatal(err)
	}
	if ia2.Digest != ia.Digest || !ia2.Loaded.Equal(ia.Loaded) || !reflect.DeepEqual(ia2.Refs, []string{"cflow.test/a:1", "cflow.test/a:2"}) {
		t.Errorf("reload: %+v, first load %+v", ia2, ia)
	}
	hexA := strings.TrimPrefix(ia.Digest, "sha256:")
	for _, q := range []string{"cflow.test/a:1", "cflow.test/a:2", ia.Digest, hexA, hexA[:12], "sha256:" + hexA[:12]} {
		if got, err := s.Get(q); err != nil || got.Digest != ia.Digest {
			t.Errorf("Get(%q) = %s, %v", q, got.Digest, err)
		}
	}
	if got, err := s.Get("cflow.test/b"); err != nil || got.Digest != ib.Digest {
		t.Errorf("a ref without tag should mean :latest: %s, %v", got.Digest, err)
	}
	for _, q := range []string{"cflow.test/nope:1", hexA[:11], "", "sha256:zz"} {
		if _, err := s.Get(q); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q): %v, want ErrNotFound", q, err)
		}
	}
	l, err := s.List()
	if err != nil || len(l) != 2 {
		t.Fatalf("List: %v, %v", l, err)
	}

	used := func(d string) bool { return d == ia.Digest }
	if _, err := s.Remove("cflow.test/a:2", used); !errors.Is(err, ErrInUse) {
		t.Fatalf("Remove of an image in use: %v", err)
	}
	if _, err := s.Get("cflow.test/a:2"); err != nil {
		t.Fatalf("refused removal changed the store: %v", err)
	}
	if _, err := s.Remove("cflow.test/a:2", func(string) bool { return false }); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"cflow.test/a:1", ia.Digest} {
		if _, err := s.Get(q); !errors.Is(err, ErrNotFound) {
			t.Errorf("after Remove, Get(%q): %v", q, err)
		}
	}
	if _, err := s.Remove(ia.Digest, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove: %v", err)
	}
	if l, _ := s.List(); len(l) != 1 || l[0].Digest != ib.Digest {
		t.Errorf("List after Remove: %+v", l)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Dir(), "tmp")); len(ents) != 0 {
		t.Errorf("tmp not empty: %v", ents)
	}
}

func TestConcurrentLoadsOfOneImage(t *testing.T) {
	requireRoot(t)
	src := filepath.Join(t.TempDir(), "two.tar")
	it.WriteOCIArchive(t, twoLayer(t), src, "cflow.test/two:1")
	s := openStore(t)
	var wg sync.WaitGroup
	digests := make([]string, 4)
	for i := range digests {
		wg.Go(func() {
			img, err := s.Load(context.Background(), src)
			if err != nil {
				t.Error(err)
			}
			digests[i] = img.Digest
		})
	}
	wg.Wait()
	if l, _ := s.List(); len(l) != 1 || l[0].Digest != digests[0] || digests[0] != digests[3] {
		t.Errorf("four concurrent loads: %v, list %+v", digests, l)
	}
}

func TestOpenSweepsStaleTempDirs(t *testing.T) {
	s := openStore(t)
	stale := filepath.Join(s.Dir(), "tmp", "load-123")
	if err := os.MkdirAll(filepath.Join(stale, "image", "rootfs"), 0o700); err != nil {
		t.Fatal(err)
	}
	// A load in progress elsewhere holds its dir's lock and is kept.
	live, release, err := s.tempDir("load")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if _, err := Open(s.Dir()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temp dir survived Open: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("Open removed a load in progress: %v", err)
	}
}

func TestExportLoadsElsewhereWithSameDigest(t *testing.T) {
	requireRoot(t)
	src := filepath.Join(t.TempDir(), "two.docker.tar")
	it.WriteDockerArchive(t, twoLayer(t), src, "cflow.test/two:1")
	s1, s2 := openStore(t), openStore(t)
	img, err := s1.Load(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n, err := s1.Export(context.Background(), img.Digest[:19], &buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) || n != img.ArchiveSize {
		t.Errorf("export wrote %d bytes (buffer %d), ArchiveSize said %d", n, buf.Len(), img.ArchiveSize)
	}
	var again bytes.Buffer
	if _, err := s1.Export(context.Background(), img.Digest, &again); err != nil || !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Errorf("two exports differ (%v)", err)
	}
	file := filepath.Join(t.TempDir(), "export.tar")
	if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := s2.Load(context.Background(), file)
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != img.Digest || got.ManifestDigest != img.ManifestDigest || !reflect.DeepEqual(got.Refs, img.Refs) || got.Size != img.Size {
		t.Errorf("loaded from export: %+v\nsource: %+v", got, img)
	}
	l1, _ := s1.RootfsLayers(img.Digest)
	l2, _ := s2.RootfsLayers(got.Digest)
	if a, b := tree(t, l1), tree(t, l2); !reflect.DeepEqual(a, b) {
		t.Errorf("rootfs differ:\n%v\n%v", a, b)
	}
}

// tree lists a directory's entries with type, mode and owner.
func tree(t *testing.T, root string) []string {
	var out []string
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, rel+" "+fi.Mode().String())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}
