package transfer

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The checkpoint stream is one tar stream of several trees, each under its
// own top-level name (images/ for CRIU's files, rw/ for the container's
// writable directories), ending with a manifest of "crc32c  size  name"
// for every regular file. Tar's own header checksums cover the rest; a
// stream without the manifest was cut short.
//
// The checksum is CRC-32C, not a cryptographic hash: it is there to catch
// damage and bugs between reading a file here and writing it there, which
// it does as surely for the corruption that happens (bursts, flipped
// bits, truncation), at ~20x SHA-256's speed (hardware CRC32). A hash
// would not make a plain stream secure either (whoever alters the stream
// rewrites the manifest too); that is the agents' mutual TLS, whose
// AES-GCM authenticates every record. SHA-256 on both ends was ~40% of the
// stream's CPU, inside the freeze, on hosts CRIU is busy on.
const manifestName = "MANIFEST.crc32c"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sum is a file's manifest entry: the CRC-32C of its content and its
// size. It is a Writer, so that a file sent in segments (offsetRecord)
// is summed as one.
type sum struct {
	crc  uint32
	size int64
}

func (s *sum) Write(p []byte) (int, error) {
	s.crc = crc32.Update(s.crc, castagnoli, p)
	s.size += int64(len(p))
	return len(p), nil
}

func (s sum) String() string { return fmt.Sprintf("%08x  %d", s.crc, s.size) }

// offsetRecord, in a regular file's PAX header, makes the entry a segment
// appended to what the stream already sent of that file, at this offset:
// a file still being written (CRIU's pages) is sent as it grows.
const offsetRecord = "CFLOW.offset"

// ErrCorrupt means a received stream failed verification.
var ErrCorrupt = errors.New("checkpoint images corrupted or incomplete")

// Tree is one directory sent under a top-level name.
type Tree struct {
	Name string // top-level name in the stream
	Dir  string // local directory
	// Appends, for a tree Follow sends while it is written, says which
	// files are only ever appended to (CRIU's pages): those are sent as
	// they grow, not once closed.
	Appends func(base string) bool
}

// Sender writes one checkpoint stream. Files can be sent while other
// files of the same tree are still being written (see Follow); a file sent
// twice is unpacked twice and the manifest names its last version.
type Sender struct {
	tw       *tar.Writer
	manifest map[string]sum
	order    []string
	total    int64
}

// NewSender starts a stream on w.
func NewSender(w io.Writer) *Sender {
	return &Sender{tw: tar.NewWriter(w), manifest: map[string]sum{}}
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

// Tree sends every directory, symlink and regular file under t.Dir, and
// overlayfs whiteouts, with owner, mode, times and the xattrs that matter
// (carriedXattr): the tree may be a container's writable layer, written by
// processes that are not root.
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
			h, err := header(p, fi, "")
			if err != nil {
				return err
			}
			h.Name = name + "/"
			return s.tw.WriteHeader(h)
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			h, err := header(p, fi, target)
			if err != nil {
				return err
			}
			h.Name = name
			return s.tw.WriteHeader(h)
		case fi.Mode().IsRegular():
			return s.file(name, p)
		case isWhiteout(fi):
			h, err := header(p, fi, "")
			if err != nil {
				return err
			}
			h.Name = name
			return s.tw.WriteHeader(h)
		default:
			// Sockets, FIFOs and devices cannot be carried; a container
			// that keeps them in /tmp or /run gets them re-created by
			// CRIU only if they are open, so skip them.
			return nil
		}
	})
}

// isWhiteout: overlayfs marks a file deleted from a lower layer with a
// character device 0:0 in the upper one.
func isWhiteout(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && fi.Mode()&os.ModeCharDevice != 0 && st.Rdev == 0
}

// carriedXattr: overlayfs keeps opaque directories and redirects in
// trusted.overlay.*; user.* belongs to the application. Security labels
// are the destination host's business.
func carriedXattr(name string) bool {
	return strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.")
}

// header describes p (owner, mode, times, xattrs) for the stream.
func header(p string, fi fs.FileInfo, link string) (*tar.Header, error) {
	h, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return nil, err
	}
	h.Uname, h.Gname = "", "" // numeric ids only: names differ between hosts
	h.Format = tar.FormatPAX
	xs, err := xattrs(p)
	if err != nil {
		return nil, err
	}
	for k, v := range xs {
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords[paxXattr+k] = v
	}
	return h, nil
}

const paxXattr = "SCHILY.xattr."

func xattrs(p string) (map[string]string, error) {
	sz, err := unix.Llistxattr(p, nil)
	if err != nil || sz == 0 {
		if errors.Is(err, unix.ENOTSUP) {
			err = nil
		}
		return nil, err
	}
	buf := make([]byte, sz)
	if sz, err = unix.Llistxattr(p, buf); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00") {
		if !carriedXattr(name) {
			continue
		}
		vsz, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, err
		}
		v := make([]byte, vsz)
		if vsz, err = unix.Lgetxattr(p, name, v); err != nil {
			return nil, err
		}
		out[name] = string(v[:vsz])
	}
	return out, nil
}

// file sends one regular file as it is now.
func (s *Sender) file(name, p string) error {
	_, err := s.segment(name, p, 0)
	return err
}

// segment sends regular file p from offset off to its current end (a
// whole file for 0, or when off is not where the stream's copy of it
// ends: it was replaced meanwhile) and returns the size sent up to.
func (s *Sender) segment(name, p string, off int64) (int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	prev, ok := s.manifest[name]
	if !ok || prev.size != off || fi.Size() < off {
		off, prev = 0, sum{}
	}
	if off > 0 && fi.Size() == off {
		return off, nil // nothing new
	}
	h, err := header(p, fi, "")
	if err != nil {
		return 0, err
	}
	h.Name = name
	// Exactly the size seen now: what a writer adds meanwhile goes in
	// the next segment, or again whole (Follow).
	h.Size = fi.Size() - off
	if off > 0 {
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords[offsetRecord] = strconv.FormatInt(off, 10)
	}
	if err := s.tw.WriteHeader(h); err != nil {
		return 0, err
	}
	n, err := io.CopyN(s.tw, io.TeeReader(io.NewSectionReader(f, off, h.Size), &prev), h.Size)
	if err != nil {
		return 0, fmt.Errorf("send %s: %w", name, err)
	}
	s.total += n
	if !ok {
		s.order = append(s.order, name)
	}
	s.manifest[name] = prev
	return prev.size, nil
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
//
// Nothing is written outside the destinations, whatever the stream holds:
// every path is resolved inside its destination (openat2 with
// RESOLVE_IN_ROOT), so a symlink the stream made earlier, absolute or
// climbing with "..", is followed as the container would see it, and the
// entry itself is never followed (an entry of another type replaces it).
func Receive(r io.Reader, dests map[string]string) (int64, error) {
	tr := tar.NewReader(bufio.NewReaderSize(r, 1<<20))
	got := map[string]sum{}
	roots := map[string]*root{}
	defer func() {
		for _, rt := range roots {
			rt.close()
		}
	}()
	var dirs []dirMeta
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
		if sparse(h) {
			// Send never makes them, and their holes would let a few
			// bytes of stream claim terabytes of disk.
			return total, bad("sparse entry %q", h.Name)
		}
		rt := roots[top]
		if rt == nil {
			if rt, err = openRoot(base); err != nil {
				return total, err
			}
			roots[top] = rt
		}
		if rest == "" && h.Typeflag == tar.TypeDir {
			dirs = append(dirs, dirMeta{rt, "", h})
			continue
		}
		if rest == "" {
			return total, bad("entry %q of type %c replaces its tree", h.Name, h.Typeflag)
		}
		dir, err := rt.openDir(path.Dir(rest))
		if err != nil {
			return total, fmt.Errorf("%s: %w", h.Name, err)
		}
		name := path.Base(rest)
		prev, seen := got[clean]
		n, fsum, err := receiveEntry(dir, name, h, tr, prev, seen)
		if err == nil && h.Typeflag != tar.TypeDir {
			err = applyMeta(dir, name, h)
		}
		unix.Close(dir)
		switch {
		case errors.Is(err, errUnknownType):
			return total, bad("entry %q of type %c", h.Name, h.Typeflag)
		case errors.Is(err, ErrCorrupt):
			return total, err
		case err != nil:
			return total, fmt.Errorf("%s: %w", h.Name, err)
		}
		if h.Typeflag == tar.TypeReg {
			total += n
			got[clean] = fsum
		}
		if h.Typeflag == tar.TypeDir {
			dirs = append(dirs, dirMeta{rt, rest, h}) // owner, mode and times once its content is in
		}
	}
	// Deepest first, so setting a directory's times is not undone by
	// work inside it.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := dirs[i].apply(); err != nil {
			return total, err
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
		if g, ok := got[f[2]]; !ok || g.String() != f[0]+"  "+f[1] {
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

var errUnknownType = errors.New("unknown entry type")

func sparse(h *tar.Header) bool {
	if h.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
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
