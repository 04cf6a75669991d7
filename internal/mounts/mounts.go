// Package mounts mounts overlays and removes directories that may still have mounts under
// them. CRIU mounts the cgroup hierarchies in a "cgyard" inside its work
// directory while it restores and unmounts them when it is done; a CRIU
// that is killed leaves them mounted, and a plain RemoveAll then fails.
package mounts

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Under lists the mount points at or below dir, deepest first.
func Under(dir string) ([]string, error) {
	dir = filepath.Clean(dir)
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescape(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out, sc.Err()
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// RemoveAll detaches every mount under dir, then removes it.
func RemoveAll(dir string) error {
	mps, err := Under(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, mp := range mps {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Overlay mounts at target an overlay whose read-only lower layer is
// an image's rootfs (from RootfsLayers) and whose writes go to upper.
// upper and work must be empty directories on one filesystem (work is
// overlayfs's scratch space); each container needs its own pair, while
// any number of containers can share one lower.
//
// The index, redirect_dir and metacopy features are off whatever the
// host's defaults: each records lower-layer inodes or paths in the upper
// layer, and a container's upper layer moves to another host (its
// writable layer migrates with it, under another copy of the image).
func Overlay(lower, upper, work, target string) error {
	for _, p := range []string{lower, upper, work} {
		// The option string is split on these; overlayfs offers no
		// escaping that the kernel's parser accepts everywhere.
		if p == "" || strings.ContainsAny(p, ",:\\") {
			return fmt.Errorf("overlay: unusable path %q (empty, or has ',', ':' or '\\')", p)
		}
	}
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work + ",index=off,redirect_dir=off,metacopy=off"
	if err := unix.Mount("overlay", target, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay on %s (%s): %w", target, opts, err)
	}
	return nil
}

// UnmountOverlay unmounts what Overlay mounted. A target that is
// busy (a process still has it open or as its root) is an error rather
// than lazily detached, so that the caller does not remove the upper dir
// under a live container.
func UnmountOverlay(target string) error {
	err := unix.Unmount(target, unix.UMOUNT_NOFOLLOW)
	if errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmount %s: not a mount point", target)
	}
	if err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}
