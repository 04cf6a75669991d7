package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"golang.org/x/sys/unix"
)

// Load adds the image at p to the store: an OCI image layout directory, an
// OCI archive (skopeo copy oci-archive:, podman save --format oci-archive)
// or a docker-archive (docker save, podman save), possibly gzipped. The
// archive must hold one image (a multi-platform index counts as one: this
// machine's platform is taken). Its refs move to the loaded image.
//
// Every blob is verified against its digest before anything is unpacked.
// Nothing becomes visible until the image is complete: it is built in a
// temp dir under the store and renamed into place, and a failed or
// cancelled load removes it. An image already stored is not unpacked
// again; only its refs are added.
func (s *Store) Load(ctx context.Context, p string) (Image, error) {
	tmp, release, err := s.tempDir("load")
	if err != nil {
		return Image{}, err
	}
	defer release()
	src, err := openSource(ctx, p, tmp)
	if err != nil {
		return Image{}, err
	}
	for _, r := range src.refs {
		if err := checkRef(r); err != nil {
			return Image{}, err
		}
	}
	cfgName, err := src.img.ConfigName()
	if err != nil {
		return Image{}, fmt.Errorf("%w: %s: config: %v", ErrBadImage, p, err)
	}
	digest := cfgName.String()
	if img, ok, err := s.addRefsIfPresent(digest, src.refs); ok || err != nil {
		return img, err
	}

	work := filepath.Join(tmp, "image")
	if err := os.Mkdir(work, 0o700); err != nil {
		return Image{}, err
	}
	img, err := copyBlobs(ctx, src.img, filepath.Join(work, "oci"))
	if err != nil {
		return Image{}, fmt.Errorf("%s: %w", p, err)
	}
	if err := verify(ctx, img, cfgName); err != nil {
		return Image{}, fmt.Errorf("%s: %w", p, err)
	}
	meta, err := unpackImage(ctx, img, work)
	if err != nil {
		return Image{}, fmt.Errorf("%s: %w", p, err)
	}
	meta.Digest = digest
	return s.commit(work, meta, src.refs)
}

// checkRef refuses names that could not be typed back or would read as a
// digest.
func checkRef(r string) error {
	if r == "" || strings.ContainsAny(r, " \t\n\r") || strings.HasPrefix(r, "sha256:") || (isHex(r) && len(r) >= 12) {
		return fmt.Errorf("%w: unusable image name %q", ErrBadImage, r)
	}
	return nil
}

func (s *Store) addRefsIfPresent(digest string, refs []string) (Image, bool, error) {
	var img Image
	var ok bool
	err := s.locked(func() error {
		if _, err := os.Stat(s.imageDir(digest)); err != nil {
			return nil
		}
		ok = true
		ix, err := s.readIndex()
		if err != nil {
			return err
		}
		for _, r := range refs {
			ix.Refs[r] = digest
		}
		if len(refs) > 0 {
			if err := s.writeIndex(ix); err != nil {
				return err
			}
		}
		img, err = s.readImage(digest, ix)
		return err
	})
	return img, ok, err
}

// copyBlobs writes the image's manifest, config and layers into a new OCI
// layout at dir (what Export later sends) and returns the image as read
// back from there, so that what is verified, unpacked and exported is the
// same bytes.
func copyBlobs(ctx context.Context, img v1.Image, dir string) (v1.Image, error) {
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return nil, err
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("%w: layers: %v", ErrBadImage, err)
	}
	for i, l := range layers {
		h, err := l.Digest()
		if err != nil {
			return nil, fmt.Errorf("%w: layer %d: %v", ErrBadImage, i, err)
		}
		rc, err := l.Compressed()
		if err != nil {
			return nil, fmt.Errorf("%w: layer %d (%s): %v", ErrBadImage, i, h, err)
		}
		err = lp.WriteBlob(h, io.NopCloser(ctxReader{ctx, rc}))
		rc.Close()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("%w: layer %d (%s): %v", ErrBadImage, i, h, err)
		}
	}
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("%w: config: %v", ErrBadImage, err)
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return nil, err
	}
	if err := lp.WriteBlob(cfgName, io.NopCloser(strings.NewReader(string(rawCfg)))); err != nil {
		return nil, err
	}
	rawMf, err := img.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", ErrBadImage, err)
	}
	mt, err := img.MediaType()
	if err != nil {
		return nil, err
	}
	mfDigest := v1.Hash{Algorithm: "sha256", Hex: sha256Hex(rawMf)}
	if want, err := img.Digest(); err != nil || want != mfDigest {
		return nil, fmt.Errorf("%w: manifest digest is %s, the index says %s", ErrBadImage, mfDigest, want)
	}
	if err := lp.WriteBlob(mfDigest, io.NopCloser(strings.NewReader(string(rawMf)))); err != nil {
		return nil, err
	}
	desc := v1.Descriptor{MediaType: mt, Size: int64(len(rawMf)), Digest: mfDigest}
	if err := lp.AppendDescriptor(desc); err != nil {
		return nil, err
	}
	return lp.Image(mfDigest)
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// verify checks every blob of a layout image against the digest that
// names it: the config against the manifest (and the key the caller
// computed), each layer's compressed bytes against the manifest and its
// uncompressed bytes against the config's diff_ids, which the config
// digest, the store's key, vouches for.
func verify(ctx context.Context, img v1.Image, cfgName v1.Hash) error {
	m, err := img.Manifest()
	if err != nil {
		return fmt.Errorf("%w: manifest: %v", ErrBadImage, err)
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return fmt.Errorf("%w: config: %v", ErrBadImage, err)
	}
	if got := "sha256:" + sha256Hex(raw); got != m.Config.Digest.String() || got != cfgName.String() {
		return fmt.Errorf("%w: config digest is %s, the manifest says %s", ErrBadImage, got, m.Config.Digest)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("%w: config: %v", ErrBadImage, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("%w: layers: %v", ErrBadImage, err)
	}
	if len(layers) != len(cf.RootFS.DiffIDs) {
		return fmt.Errorf("%w: %d layers but %d diff_ids in the config", ErrBadImage, len(layers), len(cf.RootFS.DiffIDs))
	}
	for i, l := range layers {
		want := m.Layers[i].Digest
		if err := hashMatches(ctx, l.Compressed, want); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: layer %d: %v", ErrBadImage, i, err)
		}
		if err := hashMatches(ctx, l.Uncompressed, cf.RootFS.DiffIDs[i]); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: layer %d (%s) uncompressed: %v", ErrBadImage, i, want, err)
		}
	}
	return nil
}

func hashMatches(ctx context.Context, open func() (io.ReadCloser, error), want v1.Hash) error {
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, ctxReader{ctx, rc}); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != want.String() {
		return fmt.Errorf("content has digest %s, expected %s (corrupt or tampered blob)", got, want)
	}
	return nil
}

// unpackImage flattens the layers into work/rootfs and writes the config
// and metadata beside it.
func unpackImage(ctx context.Context, img v1.Image, work string) (Image, error) {
	root := filepath.Join(work, "rootfs")
	if err := os.Mkdir(root, 0o755); err != nil {
		return Image{}, err
	}
	rc := mutate.Extract(img)
	u, err := unpack(ctx, rc, root)
	// Closing the pipe ends mutate.Extract's writer goroutine when the
	// unpack stopped early.
	rc.Close()
	if err != nil {
		if ctx.Err() != nil {
			return Image{}, ctx.Err()
		}
		return Image{}, err
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return Image{}, err
	}
	if err := os.WriteFile(filepath.Join(work, "config.json"), raw, 0o600); err != nil {
		return Image{}, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return Image{}, err
	}
	mfDigest, err := img.Digest()
	if err != nil {
		return Image{}, err
	}
	layers, err := img.Layers()
	if err != nil {
		return Image{}, err
	}
	meta := Image{
		ManifestDigest: mfDigest.String(),
		Size:           u.size,
		Created:        cf.Created.UTC(),
		Loaded:         time.Now().UTC(),
		OS:             cf.OS,
		Architecture:   cf.Architecture,
		Layers:         len(layers),
		Config: Config{
			Env: cf.Config.Env, Entrypoint: cf.Config.Entrypoint, Cmd: cf.Config.Cmd,
			WorkingDir: cf.Config.WorkingDir, User: cf.Config.User, Labels: cf.Config.Labels,
			StopSignal: cf.Config.StopSignal,
		},
	}
	return meta, nil
}

// commit moves a finished image into place and points its refs at it.
func (s *Store) commit(work string, meta Image, refs []string) (Image, error) {
	var img Image
	err := s.locked(func() error {
		dst := s.imageDir(meta.Digest)
		if _, err := os.Stat(dst); err == nil {
			// Loaded meanwhile by someone else: theirs stays, ours goes
			// with the temp dir.
		} else {
			meta.Refs = nil
			b, err := json.MarshalIndent(meta, "", "  ")
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(work, "image.json"), b, 0o600); err != nil {
				return err
			}
			// Flushed before the rename, so that after a crash a
			// visible image is a complete one.
			if err := syncFS(work); err != nil {
				return err
			}
			if err := os.Rename(work, dst); err != nil {
				return err
			}
		}
		ix, err := s.readIndex()
		if err != nil {
			return err
		}
		for _, r := range refs {
			ix.Refs[r] = meta.Digest
		}
		if err := s.writeIndex(ix); err != nil {
			return err
		}
		img, err = s.readImage(meta.Digest, ix)
		return err
	})
	return img, err
}

func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}
