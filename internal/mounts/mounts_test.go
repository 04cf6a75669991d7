package mounts

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestRemoveAllUnmountsFirst(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root (CI runs as root)")
	}
	dir := t.TempDir()
	yard := filepath.Join(dir, "work", "yard dir")
	for _, d := range []string{yard, filepath.Join(yard, "inner")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("none", d, "tmpfs", 0, ""); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = unix.Unmount(d, unix.MNT_DETACH) })
		if err := os.MkdirAll(filepath.Join(d, "inner"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mps, err := Under(dir)
	if err != nil || len(mps) != 2 || mps[0] != filepath.Join(yard, "inner") {
		t.Fatalf("Under = %v, %v; want the two mounts, deepest first", mps, err)
	}
	if err := RemoveAll(filepath.Join(dir, "work")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "work")); !os.IsNotExist(err) {
		t.Fatalf("work dir still there: %v", err)
	}
	if mps, _ := Under(dir); len(mps) != 0 {
		t.Fatalf("mounts left: %v", mps)
	}
}
