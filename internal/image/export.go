package image

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// exportEntry is one file of an export archive.
type exportEntry struct {
	name string
	size int64
	data []byte // inline content, else read from path
	path string
}

// exportEntries lists what Export writes: the image's stored OCI layout
// with an index.json naming its current refs, so the receiving Load
// restores them.
func (s *Store) exportEntries(img Image) ([]exportEntry, error) {
	oci := filepath.Join(s.imageDir(img.Digest), "oci")
	b, err := os.ReadFile(filepath.Join(oci, "index.json"))
	if err != nil {
		return nil, err
	}
	var stored v1.IndexManifest
	if err := json.Unmarshal(b, &stored); err != nil || len(stored.Manifests) != 1 {
		return nil, fmt.Errorf("image %s: stored index.json is damaged", img.Digest)
	}
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	for _, r := range img.Refs {
		d := stored.Manifests[0]
		d.Annotations = map[string]string{annotRefName: r}
		idx.Manifests = append(idx.Manifests, d)
	}
	if len(img.Refs) == 0 {
		idx.Manifests = stored.Manifests
	}
	ib, err := json.Marshal(idx)
	if err != nil {
		return nil, err
	}
	layoutFile, err := os.ReadFile(filepath.Join(oci, "oci-layout"))
	if err != nil {
		return nil, err
	}
	out := []exportEntry{
		{name: "oci-layout", size: int64(len(layoutFile)), data: layoutFile},
		{name: "index.json", size: int64(len(ib)), data: ib},
		{name: "blobs/"},
		{name: "blobs/sha256/"},
	}
	blobs := filepath.Join(oci, "blobs", "sha256")
	ents, err := os.ReadDir(blobs)
	if err != nil {
		return nil, err
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			return nil, err
		}
		out = append(out, exportEntry{name: "blobs/sha256/" + e.Name(), size: fi.Size(), path: filepath.Join(blobs, e.Name())})
	}
	return out, nil
}

// exportSize is the byte count Export writes: each entry is a 512-byte
// header plus its content padded to 512 bytes, and the archive ends with
// two zero blocks (archive/tar writes no record padding).
func (s *Store) exportSize(img Image) (int64, error) {
	es, err := s.exportEntries(img)
	if err != nil {
		return 0, err
	}
	n := int64(1024)
	for _, e := range es {
		n += 512 + (e.size+511)/512*512
	}
	return n, nil
}

// Export writes an image as an OCI archive (an OCI layout in a tar, with
// its refs as org.opencontainers.image.ref.name annotations) that Load
// accepts on another host, giving the same digest. It returns the bytes
// written, which Image.ArchiveSize announces beforehand.
func (s *Store) Export(ctx context.Context, refOrDigest string, w io.Writer) (int64, error) {
	img, err := s.Get(refOrDigest)
	if err != nil {
		return 0, err
	}
	es, err := s.exportEntries(img)
	if err != nil {
		return 0, err
	}
	cw := &countWriter{w: w}
	tw := tar.NewWriter(cw)
	// A fixed time makes two exports of an image byte-identical.
	mtime := img.Created.Truncate(time.Second)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: e.size, ModTime: mtime, Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}
		if e.name[len(e.name)-1] == '/' {
			h.Mode, h.Typeflag = 0o755, tar.TypeDir
		}
		if err := tw.WriteHeader(h); err != nil {
			return cw.n, err
		}
		if err := writeEntry(ctx, tw, e); err != nil {
			return cw.n, fmt.Errorf("export %s: %s: %w", img.Digest, e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return cw.n, err
	}
	return cw.n, nil
}

func writeEntry(ctx context.Context, w io.Writer, e exportEntry) error {
	if e.data != nil {
		_, err := w.Write(e.data)
		return err
	}
	if e.path == "" {
		return nil
	}
	f, err := os.Open(e.path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.CopyN(w, ctxReader{ctx, f}, e.size)
	return err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
