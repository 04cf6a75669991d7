package image

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestBuildArchiveLoads(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "prog")
	if err := os.WriteFile(prog, []byte("#!/bin/true\n"), 0o750); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "img.tar")
	if err := BuildArchive(file, "cflow.test/built:1", map[string]string{"/opt/app/prog": prog},
		v1.Config{Cmd: []string{"/opt/app/prog"}, WorkingDir: "/opt/app"}); err != nil {
		t.Fatal(err)
	}
	s, err := Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := s.Load(context.Background(), file)
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Refs) != 1 || img.Refs[0] != "cflow.test/built:1" || img.Config.WorkingDir != "/opt/app" {
		t.Errorf("loaded %+v", img)
	}
	lower, err := s.RootfsLayers(img.Digest)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(lower, "opt/app/prog"))
	if err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("prog in the image: %v %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(lower, "tmp")); err != nil || fi.Mode()&os.ModeSticky == 0 {
		t.Errorf("/tmp: %v %v", fi, err)
	}
}
