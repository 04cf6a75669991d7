package image

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	it "github.com/containerflow/containerflow/internal/image/imagetest"
	"github.com/containerflow/containerflow/internal/mounts"
)

// chrootRun runs a command with root as its root directory.
func chrootRun(t *testing.T, root string, args ...string) string {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/bin"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v in %s: %v\n%s", args, root, err, out)
	}
	return string(out)
}

func TestBusyboxImageRuns(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	extra := filepath.Join(dir, "hello.txt")
	if err := os.WriteFile(extra, []byte("hello from the host\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	src := it.BuildBusybox(t, dir, map[string]string{"/opt/cflow/hello.txt": extra})
	s := openStore(t)
	img, err := s.Load(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	if img.Refs[0] != it.BusyboxRef || img.Layers != 2 || strings.Join(img.Config.Command(nil), " ") != "/bin/sh" {
		t.Errorf("busybox image: %+v", img)
	}
	lower, err := s.RootfsLayers(it.BusyboxRef)
	if err != nil {
		t.Fatal(err)
	}
	out := chrootRun(t, lower, "/bin/sh", "-c", "cat /opt/cflow/hello.txt; stat -c %a /opt/cflow/hello.txt; id -un")
	if out != "hello from the host\n640\nroot\n" {
		t.Errorf("output %q", out)
	}
}

func TestOverlayOfAnImage(t *testing.T) {
	requireRoot(t)
	s := openStore(t)
	img, err := s.Load(context.Background(), it.BuildBusybox(t, t.TempDir(), nil))
	if err != nil {
		t.Fatal(err)
	}
	lower, err := s.RootfsLayers(img.Digest)
	if err != nil {
		t.Fatal(err)
	}
	c := t.TempDir()
	upper, work, target := filepath.Join(c, "upper"), filepath.Join(c, "work"), filepath.Join(c, "rootfs")
	for _, d := range []string{upper, work, target} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := mounts.Overlay(lower, upper, work, target); err != nil {
		t.Fatal(err)
	}
	mounted := true
	t.Cleanup(func() {
		if mounted {
			_ = unix.Unmount(target, unix.MNT_DETACH)
		}
	})
	out := chrootRun(t, target, "/bin/sh", "-c", "echo written > /tmp/new; rm /etc/hostname; cat /tmp/new; ls /etc")
	if out != "written\ngroup\npasswd\n" {
		t.Errorf("output %q", out)
	}
	if b, err := os.ReadFile(filepath.Join(upper, "tmp", "new")); err != nil || string(b) != "written\n" {
		t.Errorf("write did not go to the upper dir: %q, %v", b, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(upper, "etc", "hostname"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("no whiteout for the deleted lower file in upper: %v mode %o", err, st.Mode)
	}
	if _, err := os.Stat(filepath.Join(lower, "etc", "hostname")); err != nil {
		t.Errorf("the lower dir was changed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(lower, "tmp", "new")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a write reached the lower dir: %v", err)
	}
	if err := mounts.UnmountOverlay(target); err != nil {
		t.Fatal(err)
	}
	mounted = false
	if ents, _ := os.ReadDir(target); len(ents) != 0 {
		t.Errorf("target still shows %d entries after unmount", len(ents))
	}
	if err := mounts.UnmountOverlay(target); err == nil {
		t.Error("a second unmount succeeded")
	}
	if err := mounts.Overlay(lower, upper+",x", work, target); err == nil {
		_ = unix.Unmount(target, unix.MNT_DETACH)
		t.Error("a path with a comma was accepted")
	}
}
