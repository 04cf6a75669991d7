package cli

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerflow/containerflow/internal/image"
	"github.com/containerflow/containerflow/internal/image/imagetest"
)

// A layout directory given to `cflow image load` is sent as an OCI
// archive: the stream must load as the same image.
func TestLayoutDirIsSentAsOCIArchive(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to keep image file owners")
	}
	dir := t.TempDir()
	img := imagetest.Busybox(t, nil)
	imagetest.WriteLayout(t, img, filepath.Join(dir, "layout"), imagetest.BusyboxRef)
	rc, err := openArchive(filepath.Join(dir, "layout"))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	file := filepath.Join(dir, "sent.tar")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, rc); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s, err := image.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(context.Background(), file)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.ConfigName()
	if got.Digest != want.String() || len(got.Refs) != 1 || got.Refs[0] != imagetest.BusyboxRef {
		t.Errorf("loaded %+v, want digest %s", got, want)
	}
	if _, err := openArchive(t.TempDir()); err == nil {
		t.Error("a directory without oci-layout was accepted")
	}
}
