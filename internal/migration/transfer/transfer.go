package transfer

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// The checkpoint stream is one tar stream of several trees, each under its
// own top-level name (images/ for CRIU's files, rw/ for the container's
// writable directories), ending with a manifest of "sha256  size  name"
// for every regular file. Tar's own header checksums cover the rest; a
// stream without the manifest was cut short.
const manifestName = "MANIFEST.sha256"

// ErrCorrupt means a received stream failed verification.
var ErrCorrupt = errors.New("checkpoint images corrupted or incomplete")

// Tree is one directory sent under a top-level name.
type Tree struct {
	Name string // top-level name in the stream
	Dir  string // local directory
}

// Sender writes one checkpoint stream. Files can be sent while other
// files of the same tree are still being written (see Follow); a file sent
// twice is unpacked twice and the manifest names its last version.
type Sender struct {
	tw       *tar.Writer
	manifest map[string]string // name -> "sha256  size"
	order    []string
	total    int64
}

// NewSender starts a stream on w.
func NewSender(w io.Writer) *Sender {
	return &Sender{tw: tar.NewWriter(w), manifest: map[string]string{}}
}

// Send writes the trees and the manifest; it returns the bytes of file
// content sent.
func Send(trees []Tree, w io.Writer) (int64, error) {
	s := NewSender(w)
	for _, t := range trees {
		if err := s.Tree(t); err != nil {
			return s.total, err
		}
	}
	return s.Close()
}

// Tree sends every directory, symlink and regular file under t.Dir.
func (s *Sender) Tree(t Tree) error {
	return filepath.WalkDir(t.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(t.Dir, p)
		if err != nil {
			return err
		}
		name := path.Join(t.Name, filepath.ToSlash(rel))
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			mode := int64(fi.Mode().Perm())
			if fi.Mode()&os.ModeSticky != 0 {
				mode |= 0o1000 // tar keeps Unix mode bits; Go's ModeSticky is not one
			}
			return s.tw.WriteHeader(&tar.Header{Name: name + "/", Mode: mode, Typeflag: tar.TypeDir})
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return s.tw.WriteHeader(&tar.Header{Name: name, Linkname: target, Typeflag: tar.TypeSymlink})
		case fi.Mode().IsRegular():
			return s.file(name, p)
		default:
			// Sockets, FIFOs and devices cannot be carried; a container
			// that keeps them in /tmp or /run gets them re-created by
			// CRIU only if they are open, so skip them.
			return nil
		}
	})
}

// file sends one regular file as it is now.
func (s *Sender) file(name, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := s.tw.WriteHeader(&tar.Header{Name: name, Mode: int64(fi.Mode().Perm()), Size: fi.Size(), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	h := sha256.New()
	// Exactly the size announced: a file that grows meanwhile is sent
	// again by Follow.
	n, err := io.CopyN(s.tw, io.TeeReader(f, h), fi.Size())
	if err != nil {
		return fmt.Errorf("send %s: %w", name, err)
	}
	s.total += n
	if _, ok := s.manifest[name]; !ok {
		s.order = append(s.order, name)
	}
	s.manifest[name] = fmt.Sprintf("%s  %d", hex.EncodeToString(h.Sum(nil)), n)
	return nil
}

// Close writes the manifest and ends the stream; it returns the bytes of
// file content sent.
func (s *Sender) Close() (int64, error) {
	var m strings.Builder
	for _, name := range s.order {
		fmt.Fprintf(&m, "%s  %s\n", s.manifest[name], name)
	}
	if err := s.tw.WriteHeader(&tar.Header{Name: manifestName, Mode: 0o600, Size: int64(m.Len()), Typeflag: tar.TypeReg}); err != nil {
		return s.total, err
	}
	if _, err := io.WriteString(s.tw, m.String()); err != nil {
		return s.total, err
	}
	return s.total, s.tw.Close()
}

// Receive unpacks a stream from Send, placing each top-level
// name into dests[name], and verifies every file against the manifest.
// Anything unexpected — an unknown top-level name, a path escaping its
// directory, a checksum or size mismatch, a missing manifest or file — is
// ErrCorrupt.
func Receive(r io.Reader, dests map[string]string) (int64, error) {
	tr := tar.NewReader(bufio.NewReaderSize(r, 1<<20))
	got := map[string]string{}
	var manifest []byte
	var total int64
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, a...))
	}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return total, bad("%v", err)
		}
		if h.Name == manifestName {
			if manifest, err = io.ReadAll(io.LimitReader(tr, 4<<20)); err != nil {
				return total, bad("manifest: %v", err)
			}
			continue
		}
		clean := path.Clean(h.Name)
		top, rest, _ := strings.Cut(clean, "/")
		base, ok := dests[top]
		if !ok || clean != strings.TrimSuffix(h.Name, "/") || strings.HasPrefix(clean, "/") || strings.Contains("/"+clean+"/", "/../") {
			return total, bad("bad entry %q", h.Name)
		}
		dst := filepath.Join(base, filepath.FromSlash(rest))
		switch h.Typeflag {
		case tar.TypeDir:
			mode := os.FileMode(h.Mode).Perm()
			if h.Mode&0o1000 != 0 {
				mode |= os.ModeSticky
			}
			if err := os.MkdirAll(dst, 0o700); err != nil {
				return total, err
			}
			if err := os.Chmod(dst, mode); err != nil {
				return total, err
			}
		case tar.TypeSymlink:
			_ = os.Remove(dst)
			if err := os.Symlink(h.Linkname, dst); err != nil {
				return total, err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
				return total, err
			}
			f, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, os.FileMode(h.Mode).Perm())
			if err != nil {
				return total, err
			}
			hs := sha256.New()
			n, err := io.Copy(io.MultiWriter(f, hs), tr)
			f.Close()
			if err != nil {
				return total, bad("%s: %v", h.Name, err)
			}
			total += n
			got[clean] = fmt.Sprintf("%s  %d", hex.EncodeToString(hs.Sum(nil)), n)
		default:
			return total, bad("entry %q of type %c", h.Name, h.Typeflag)
		}
	}
	if manifest == nil {
		return total, bad("stream ended without manifest")
	}
	want := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(manifest)), "\n") {
		if line == "" {
			continue
		}
		f := strings.SplitN(line, "  ", 3)
		if len(f) != 3 {
			return total, bad("manifest line %q", line)
		}
		want[f[2]] = true
		if got[f[2]] != f[0]+"  "+f[1] {
			return total, bad("%s: checksum or size mismatch", f[2])
		}
	}
	for name := range got {
		if !want[name] {
			return total, bad("%s not in manifest", name)
		}
	}
	return total, nil
}

// DirSize sums the regular files of dir.
func DirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
