package image

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// source is an image found in what the user gave Load.
type source struct {
	img    v1.Image
	refs   []string
	format string // "oci-layout", "oci-archive" or "docker-archive"
}

// Annotations that name an image in an OCI index. containerd (and docker
// save since 25) puts the full name in its own key and only the tag in
// the standard one, so its key wins when present.
const (
	annotRefName       = "org.opencontainers.image.ref.name"
	annotContainerdRef = "io.containerd.image.name"
)

// openSource finds the image in a layout dir, an OCI archive or a
// docker-archive (optionally gzip-compressed). tmp is a scratch dir that
// lives as long as the returned image is read.
func openSource(ctx context.Context, p, tmp string) (source, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return source{}, err
	}
	if fi.IsDir() {
		if _, err := os.Stat(filepath.Join(p, "oci-layout")); err != nil {
			return source{}, fmt.Errorf("%w: directory %s is not an OCI image layout (it has no oci-layout file)", ErrBadImage, p)
		}
		return fromLayout(p, "oci-layout")
	}
	f, err := os.Open(p)
	if err != nil {
		return source{}, err
	}
	defer f.Close()
	magic := make([]byte, 2)
	_, _ = io.ReadFull(f, magic)
	if magic[0] == 0x1f && magic[1] == 0x8b {
		// docker save | gzip: tarball.Image reopens the archive once per
		// blob, which must not mean decompressing it again each time.
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return source{}, err
		}
		zr, err := gzip.NewReader(bufio.NewReader(f))
		if err != nil {
			return source{}, fmt.Errorf("%w: %s: %v", ErrBadImage, p, err)
		}
		plain := filepath.Join(tmp, "archive.tar")
		if err := copyToFile(ctx, plain, zr); err != nil {
			return source{}, fmt.Errorf("%w: decompressing %s: %v", ErrBadImage, p, err)
		}
		p = plain
	}
	names, err := tarNames(p)
	if err != nil {
		return source{}, fmt.Errorf("%w: %s is neither an image layout directory nor a tar archive (%v)", ErrBadImage, p, err)
	}
	switch {
	case names["manifest.json"]:
		return fromDockerArchive(p)
	case names["oci-layout"] && names["index.json"]:
		dir := filepath.Join(tmp, "layout")
		if err := untarLayout(ctx, p, dir); err != nil {
			return source{}, err
		}
		return fromLayout(dir, "oci-archive")
	}
	return source{}, fmt.Errorf("%w: %s has neither manifest.json (docker-archive) nor oci-layout and index.json (OCI archive)", ErrBadImage, p)
}

func copyToFile(ctx context.Context, dst string, r io.Reader) error {
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, ctxReader{ctx, r}); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// tarNames lists the top-level files of a tar archive.
func tarNames(p string) (map[string]bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := tar.NewReader(bufio.NewReader(f))
	names := map[string]bool{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		names[path.Clean(h.Name)] = true
	}
	if len(names) == 0 {
		return nil, errors.New("no entries")
	}
	return names, nil
}

// untarLayout unpacks an OCI archive. Only directories and regular files
// are made, and names are clamped under dir, so the archive cannot write
// elsewhere (an OCI layout has no links).
func untarLayout(ctx context.Context, p, dir string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(bufio.NewReader(f))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: reading OCI archive %s: %v", ErrBadImage, p, err)
		}
		rel := clean(h.Name)
		if rel == "." {
			continue
		}
		dst := filepath.Join(dir, filepath.FromSlash(rel))
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(dst, 0o700)
		case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // old archives still use TypeRegA
			if err = os.MkdirAll(filepath.Dir(dst), 0o700); err == nil {
				err = copyToFile(ctx, dst, tr)
			}
		default:
			err = fmt.Errorf("%w: OCI archive entry %q has unexpected type %q", ErrBadImage, h.Name, h.Typeflag)
		}
		if err != nil {
			return err
		}
	}
}

func fromDockerArchive(p string) (source, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(p) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return source{}, fmt.Errorf("%w: docker-archive %s: %v", ErrBadImage, p, err)
	}
	if len(m) != 1 {
		return source{}, fmt.Errorf("%w: docker-archive %s holds %d images; save one image per archive", ErrBadImage, p, len(m))
	}
	img, err := tarball.Image(opener, nil)
	if err != nil {
		return source{}, fmt.Errorf("%w: docker-archive %s: %v", ErrBadImage, p, err)
	}
	return source{img: img, refs: m[0].RepoTags, format: "docker-archive"}, nil
}

// fromLayout picks the one image of a layout: every top-level descriptor
// must name the same image (the same manifest under several refs) or a
// multi-platform index, of which this machine's platform is taken.
func fromLayout(dir, format string) (source, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return source{}, fmt.Errorf("%w: OCI layout %s: %v", ErrBadImage, dir, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return source{}, fmt.Errorf("%w: OCI layout %s index: %v", ErrBadImage, dir, err)
	}
	var (
		chosen *v1.Hash
		refs   []string
		src    source
	)
	for _, d := range im.Manifests {
		var img v1.Image
		switch {
		case d.MediaType.IsImage():
			img, err = idx.Image(d.Digest)
		case d.MediaType.IsIndex():
			var sub v1.ImageIndex
			if sub, err = idx.ImageIndex(d.Digest); err == nil {
				img, err = platformImage(sub)
			}
		default:
			continue
		}
		if err != nil {
			return source{}, fmt.Errorf("%w: OCI layout %s: %v", ErrBadImage, dir, err)
		}
		h, err := img.Digest()
		if err != nil {
			return source{}, fmt.Errorf("%w: OCI layout %s: %v", ErrBadImage, dir, err)
		}
		if chosen != nil && *chosen != h {
			return source{}, fmt.Errorf("%w: OCI layout %s holds several images; save one image per archive", ErrBadImage, dir)
		}
		chosen, src.img = &h, img
		if r := d.Annotations[annotContainerdRef]; r != "" {
			refs = append(refs, r)
		} else if r := d.Annotations[annotRefName]; r != "" {
			refs = append(refs, r)
		}
	}
	if chosen == nil {
		return source{}, fmt.Errorf("%w: OCI layout %s has no image", ErrBadImage, dir)
	}
	src.refs, src.format = refs, format
	return src, nil
}

func platformImage(idx v1.ImageIndex) (v1.Image, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var seen []string
	for _, d := range im.Manifests {
		if !d.MediaType.IsImage() || d.Platform == nil {
			continue
		}
		seen = append(seen, d.Platform.OS+"/"+d.Platform.Architecture)
		if d.Platform.OS == "linux" && d.Platform.Architecture == runtime.GOARCH {
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("no linux/%s image in the index (it has %s)", runtime.GOARCH, strings.Join(seen, ", "))
}
