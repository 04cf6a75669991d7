package imagetest

import (
	"os/exec"
	"path/filepath"
	"sort"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// DebCache is where scripts/test-deps.sh downloads (without installing)
// the Debian packages that Debian builds images of.
const DebCache = "/var/cache/containerflow/test-debs"

// Debian returns an image of Debian packages unpacked as dpkg would unpack
// them (their maintainer scripts are not run: what those would do goes in
// extra, the image's top layer) under cfg: an image built elsewhere from
// the distribution's own binaries and stock configuration.
func Debian(t testing.TB, pkgs []string, extra []File, cfg v1.Config) v1.Image {
	t.Helper()
	root := t.TempDir()
	for _, p := range pkgs {
		debs, _ := filepath.Glob(filepath.Join(DebCache, p+"_*.deb"))
		if len(debs) == 0 {
			t.Fatalf("no %s package in %s: run scripts/test-deps.sh (make test does)", p, DebCache)
		}
		sort.Strings(debs)
		if out, err := exec.Command("dpkg-deb", "-x", debs[len(debs)-1], root).CombinedOutput(); err != nil {
			t.Fatalf("unpack %s: %v\n%s", debs[len(debs)-1], err, out)
		}
	}
	file := filepath.Join(t.TempDir(), "layer.tar")
	// GNU tar keeps owners, modes, symlinks and hard links as dpkg made them.
	if out, err := exec.Command("tar", "--numeric-owner", "-C", root, "-cf", file, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar %s: %v\n%s", root, err, out)
	}
	base, err := tarball.LayerFromFile(file, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	return Image(t, cfg, base, Layer(t, extra...))
}
