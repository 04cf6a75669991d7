package transfer

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A container's writable layer arrives as it was: owners (a server that
// is not root must still own its files), set-id and sticky bits, times,
// overlayfs whiteouts and opaque directories, and application xattrs.
func TestTreeMetadataRoundTrip(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown and mknod")
	}
	src := filepath.Join(t.TempDir(), "upper")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "var/cache/app"), 0o755))
	must(os.WriteFile(filepath.Join(src, "var/cache/app/state"), []byte("mine"), 0o600))
	must(os.Chown(filepath.Join(src, "var/cache/app/state"), 65534, 65533))
	must(os.Chown(filepath.Join(src, "var/cache/app"), 65534, 65534))
	must(os.WriteFile(filepath.Join(src, "suid"), []byte("x"), 0o755))
	must(os.Chmod(filepath.Join(src, "suid"), 0o755|os.ModeSetuid))
	must(os.Mkdir(filepath.Join(src, "sticky"), 0o777))
	must(os.Chmod(filepath.Join(src, "sticky"), 0o777|os.ModeSticky))
	must(unix.Mknod(filepath.Join(src, "deleted"), unix.S_IFCHR, 0))
	must(os.Mkdir(filepath.Join(src, "opaque"), 0o755))
	must(unix.Lsetxattr(filepath.Join(src, "opaque"), "trusted.overlay.opaque", []byte("y"), 0))
	must(unix.Lsetxattr(filepath.Join(src, "suid"), "user.app", []byte("v1"), 0))
	must(os.Symlink("var/cache", filepath.Join(src, "link")))
	must(os.Lchown(filepath.Join(src, "link"), 65534, 65534))
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	must(os.Chtimes(filepath.Join(src, "var/cache/app/state"), old, old))

	var buf bytes.Buffer
	if _, err := Send([]Tree{{Name: "rw", Dir: src}}, &buf); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "upper")
	if _, err := Receive(&buf, map[string]string{"rw": dst}); err != nil {
		t.Fatal(err)
	}
	st := func(rel string) *syscall.Stat_t {
		t.Helper()
		fi, err := os.Lstat(filepath.Join(dst, rel))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t)
	}
	if s := st("var/cache/app/state"); s.Uid != 65534 || s.Gid != 65533 || s.Mode&0o7777 != 0o600 || s.Mtim.Sec != old.Unix() {
		t.Errorf("state: uid %d gid %d mode %o mtime %d", s.Uid, s.Gid, s.Mode&0o7777, s.Mtim.Sec)
	}
	if s := st("var/cache/app"); s.Uid != 65534 {
		t.Errorf("directory owner %d", s.Uid)
	}
	if s := st("suid"); s.Mode&0o7777 != 0o4755 {
		t.Errorf("suid mode %o", s.Mode&0o7777)
	}
	if s := st("sticky"); s.Mode&0o7777 != 0o1777 {
		t.Errorf("sticky mode %o", s.Mode&0o7777)
	}
	if s := st("deleted"); s.Mode&unix.S_IFMT != unix.S_IFCHR || s.Rdev != 0 {
		t.Errorf("whiteout: mode %o rdev %d", s.Mode, s.Rdev)
	}
	if s := st("link"); s.Uid != 65534 {
		t.Errorf("symlink owner %d", s.Uid)
	}
	for p, want := range map[string][2]string{"opaque": {"trusted.overlay.opaque", "y"}, "suid": {"user.app", "v1"}} {
		v := make([]byte, 16)
		n, err := unix.Lgetxattr(filepath.Join(dst, p), want[0], v)
		if err != nil || string(v[:n]) != want[1] {
			t.Errorf("%s %s: %q %v", p, want[0], v[:max(n, 0)], err)
		}
	}
}

// Only overlay whiteouts cross: a stream carrying a real device node is
// refused.
func TestDeviceNodeRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mknod")
	}
	src := t.TempDir()
	if err := unix.Mknod(filepath.Join(src, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := Send([]Tree{{Name: "rw", Dir: src}}, &buf); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(buf.Bytes(), []byte("rw/null")) {
		t.Fatal("the sender sent a device node")
	}
	var forged bytes.Buffer
	tw := tar.NewWriter(&forged)
	if err := tw.WriteHeader(&tar.Header{Name: "rw/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}); err != nil {
		t.Fatal(err)
	}
	tw.Close()
	dst := t.TempDir()
	if _, err := Receive(&forged, map[string]string{"rw": dst}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("forged device node: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dst, "null")); !os.IsNotExist(err) {
		t.Errorf("device node created: %v", err)
	}
}
