package image

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// MountOverlay mounts at target an overlay whose read-only lower layer is
// an image's rootfs (from RootfsLayers) and whose writes go to upper.
// upper and work must be empty directories on one filesystem (work is
// overlayfs's scratch space); each container needs its own pair, while
// any number of containers can share one lower.
//
// It is a plain overlay mount with no extra options, so that it looks to
// CRIU (and to runc's rootfs setup) like any other overlay root.
func MountOverlay(lower, upper, work, target string) error {
	for _, p := range []string{lower, upper, work} {
		// The option string is split on these; overlayfs offers no
		// escaping that the kernel's parser accepts everywhere.
		if p == "" || strings.ContainsAny(p, ",:\\") {
			return fmt.Errorf("overlay: unusable path %q (empty, or has ',', ':' or '\\')", p)
		}
	}
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", target, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay on %s (%s): %w", target, opts, err)
	}
	return nil
}

// UnmountOverlay unmounts what MountOverlay mounted. A target that is
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
