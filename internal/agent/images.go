package agent

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// manifestName is the last entry of an image stream: "sha256  size  name"
// per file. A stream without it was cut short.
const manifestName = "MANIFEST.sha256"

// ErrCorrupt means a received image stream failed verification.
var ErrCorrupt = errors.New("checkpoint images corrupted or incomplete")

// sendImages writes every regular file of dir to w as a tar stream, then
// the manifest. It returns the number of image bytes.
func sendImages(dir string, w io.Writer) (int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	tw := tar.NewWriter(w)
	var manifest strings.Builder
	var total int64
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return total, err
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return total, err
		}
		h := sha256.New()
		err = tw.WriteHeader(&tar.Header{Name: e.Name(), Mode: 0o600, Size: fi.Size(), Typeflag: tar.TypeReg})
		if err == nil {
			_, err = io.Copy(tw, io.TeeReader(f, h))
		}
		f.Close()
		if err != nil {
			return total, fmt.Errorf("send %s: %w", e.Name(), err)
		}
		total += fi.Size()
		fmt.Fprintf(&manifest, "%s  %d  %s\n", hex.EncodeToString(h.Sum(nil)), fi.Size(), e.Name())
	}
	m := manifest.String()
	if err := tw.WriteHeader(&tar.Header{Name: manifestName, Mode: 0o600, Size: int64(len(m)), Typeflag: tar.TypeReg}); err != nil {
		return total, err
	}
	if _, err := io.WriteString(tw, m); err != nil {
		return total, err
	}
	return total, tw.Close()
}

// receiveImages unpacks a stream from sendImages into dir and verifies
// every file against the manifest. Anything unexpected — a path outside
// dir, a checksum or size mismatch, a missing manifest or file — is
// ErrCorrupt.
func receiveImages(r io.Reader, dir string) (int64, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, err
	}
	tr := tar.NewReader(bufio.NewReaderSize(r, 1<<20))
	got := map[string]string{}
	sizes := map[string]int64{}
	var manifest []byte
	var total int64
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return total, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		name := h.Name
		if name != filepath.Base(name) || name == "." || name == ".." || h.Typeflag != tar.TypeReg {
			return total, fmt.Errorf("%w: bad entry %q", ErrCorrupt, name)
		}
		if name == manifestName {
			manifest, err = io.ReadAll(io.LimitReader(tr, 1<<20))
			if err != nil {
				return total, fmt.Errorf("%w: manifest: %v", ErrCorrupt, err)
			}
			continue
		}
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
		if err != nil {
			return total, err
		}
		hs := sha256.New()
		n, err := io.Copy(io.MultiWriter(f, hs), tr)
		f.Close()
		if err != nil {
			return total, fmt.Errorf("%w: %s: %v", ErrCorrupt, name, err)
		}
		total += n
		got[name] = hex.EncodeToString(hs.Sum(nil))
		sizes[name] = n
	}
	if manifest == nil {
		return total, fmt.Errorf("%w: stream ended without manifest", ErrCorrupt)
	}
	want := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(manifest)), "\n") {
		var sum, name string
		var size int64
		if _, err := fmt.Sscanf(line, "%s %d %s", &sum, &size, &name); err != nil {
			return total, fmt.Errorf("%w: manifest line %q", ErrCorrupt, line)
		}
		want[name] = true
		if got[name] != sum || sizes[name] != size {
			return total, fmt.Errorf("%w: %s: checksum or size mismatch", ErrCorrupt, name)
		}
	}
	for name := range got {
		if !want[name] {
			return total, fmt.Errorf("%w: %s not in manifest", ErrCorrupt, name)
		}
	}
	return total, nil
}

// dirSize sums the regular files of dir.
func dirSize(dir string) int64 {
	var n int64
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}
