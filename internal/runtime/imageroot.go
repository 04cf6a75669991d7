package runtime

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerflow/containerflow/internal/mounts"
)

// A container from an image has for root an overlay of the image's
// unpacked, read-only tree (Spec.RootfsLower, shared by every container of
// that image) and a writable upper layer of its own. The upper layer lives
// under the bundle's writable directory, RWDir, so a migration streams it
// with the other writable trees (owners, whiteouts and opaque directories
// kept, see transfer.Tree) and the destination mounts the same overlay
// over the same image before CRIU restores into it.

// upperDir is a bundle's writable layer.
func upperDir(bundle string) string { return filepath.Join(RWDir(bundle), "upper") }

// overlayWorkDir is overlayfs's scratch directory; it must be on the
// upper layer's filesystem and is not carried.
func overlayWorkDir(bundle string) string { return filepath.Join(bundle, "overlay-work") }

// mountImageRoot mounts the overlay of s's image at target.
func (r *Runtime) mountImageRoot(s Spec, target string) error {
	bundle := r.BundleDir(s.Name)
	for _, d := range []string{upperDir(bundle), overlayWorkDir(bundle), target} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := mounts.Overlay(s.RootfsLower, upperDir(bundle), overlayWorkDir(bundle), target); err != nil {
		return fmt.Errorf("the image root of %s: %w", s.Name, err)
	}
	return nil
}
