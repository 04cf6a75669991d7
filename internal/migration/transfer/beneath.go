package transfer

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// root is a destination of Receive: every path under it is resolved by the
// kernel inside it.
type root struct {
	fd     int    // O_PATH of the destination
	parent int    // O_PATH of its parent, for the destination's own metadata
	name   string // its name in parent
}

func openRoot(dir string) (*root, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	parent, err := unix.Open(filepath.Dir(dir), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("open %s: %w", filepath.Dir(dir), err)
	}
	return &root{fd: fd, parent: parent, name: filepath.Base(dir)}, nil
}

func (r *root) close() {
	unix.Close(r.fd)
	unix.Close(r.parent)
}

// openDir opens the directory rel of the root, making missing ones (0700:
// their entries, later in the stream, say what they should be).
func (r *root) openDir(rel string) (int, error) {
	if rel == "." || rel == "" {
		return unix.Dup(r.fd)
	}
	fd, err := unix.Openat2(r.fd, rel, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	parent, err := r.openDir(path.Dir(rel))
	if err != nil {
		return -1, err
	}
	err = unix.Mkdirat(parent, path.Base(rel), 0o700)
	unix.Close(parent)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, err
	}
	fd, err = unix.Openat2(r.fd, rel, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	return fd, err
}

// kind is the file type of name in dir, 0 when there is none.
func kind(dir int, name string) (uint32, error) {
	var st unix.Stat_t
	err := unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return 0, nil
	}
	return st.Mode & unix.S_IFMT, err
}

// replace removes name from dir unless it is of type want: an entry takes
// the place of whatever of another type the stream made there before
// (never following it, if it is a symlink). A directory that is not empty
// stays, and the entry fails.
func replace(dir int, name string, want uint32) error {
	k, err := kind(dir, name)
	if err != nil || k == 0 || k == want {
		return err
	}
	flags := 0
	if k == unix.S_IFDIR {
		flags = unix.AT_REMOVEDIR
	}
	return unix.Unlinkat(dir, name, flags)
}

// receiveEntry makes one entry of the stream as name in dir; for a regular
// file, it returns the bytes written and the file's sum, continuing prev
// for a segment (offsetRecord; seen says prev is the stream's copy so
// far). Its owner, mode and times are applyMeta's.
func receiveEntry(dir int, name string, h *tar.Header, body io.Reader, prev sum, seen bool) (int64, sum, error) {
	switch h.Typeflag {
	case tar.TypeDir:
		if err := replace(dir, name, unix.S_IFDIR); err != nil {
			return 0, sum{}, err
		}
		if err := unix.Mkdirat(dir, name, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return 0, sum{}, err
		}
		return 0, sum{}, nil
	case tar.TypeSymlink:
		if err := unix.Unlinkat(dir, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			if err := unix.Unlinkat(dir, name, unix.AT_REMOVEDIR); err != nil {
				return 0, sum{}, err
			}
		}
		return 0, sum{}, unix.Symlinkat(h.Linkname, dir, name)
	case tar.TypeChar:
		if h.Devmajor != 0 || h.Devminor != 0 {
			return 0, sum{}, fmt.Errorf("%w: device %q %d:%d (only overlay whiteouts are carried)", ErrCorrupt, h.Name, h.Devmajor, h.Devminor)
		}
		if err := unix.Unlinkat(dir, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return 0, sum{}, err
		}
		return 0, sum{}, unix.Mknodat(dir, name, unix.S_IFCHR, 0)
	case tar.TypeReg:
		off, isSegment := h.PAXRecords[offsetRecord]
		if !isSegment {
			return receiveFile(dir, name, h, body, 0, sum{})
		}
		at, err := strconv.ParseInt(off, 10, 64)
		if err != nil || !seen || at != prev.size || at <= 0 {
			return 0, sum{}, fmt.Errorf("%w: %s: a segment at %q, the file has %d bytes", ErrCorrupt, h.Name, off, prev.size)
		}
		return receiveFile(dir, name, h, body, at, prev)
	}
	return 0, sum{}, errUnknownType
}

// receiveFile writes a regular file's entry: the whole file, or a segment
// at off of the file the stream made (summed so far as prev).
func receiveFile(dir int, name string, h *tar.Header, body io.Reader, off int64, prev sum) (int64, sum, error) {
	flags := unix.O_WRONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	if off == 0 {
		if err := replace(dir, name, unix.S_IFREG); err != nil {
			return 0, sum{}, err
		}
		flags |= unix.O_CREAT | unix.O_TRUNC
	}
	fd, err := unix.Openat(dir, name, flags, 0o600)
	if err != nil {
		return 0, sum{}, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	if off > 0 {
		// The file must still be what the stream made of it (a symlink
		// or anything else in its place fails O_NOFOLLOW or this).
		if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() || fi.Size() != off {
			return 0, sum{}, fmt.Errorf("%w: %s: a segment at %d does not continue the file", ErrCorrupt, h.Name, off)
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return 0, sum{}, err
		}
	}
	n, err := io.Copy(io.MultiWriter(f, &prev), body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, sum{}, fmt.Errorf("%w: %s: %v", ErrCorrupt, h.Name, err)
	}
	return n, prev, nil
}

type dirMeta struct {
	root *root
	rel  string // "" for the destination itself
	h    *tar.Header
}

// apply gives a directory its metadata once its content is in. A later
// entry may have replaced it: then there is nothing to apply it to.
func (d dirMeta) apply() error {
	dir, name := d.root.parent, d.root.name
	if d.rel != "" {
		fd, err := d.root.openDir(path.Dir(d.rel))
		if err != nil {
			return fmt.Errorf("%s: %w", d.h.Name, err)
		}
		defer unix.Close(fd)
		dir, name = fd, path.Base(d.rel)
	}
	if k, err := kind(dir, name); err != nil || k != unix.S_IFDIR {
		return err
	}
	return applyMeta(dir, name, d.h)
}

// applyMeta gives name in dir the owner, xattrs, mode and times of h; in
// that order, since a change of owner clears the set-id bits. name is
// never followed: only a symlink itself could be, and it gets no mode.
func applyMeta(dir int, name string, h *tar.Header) error {
	if err := unix.Fchownat(dir, name, h.Uid, h.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	for k, v := range h.PAXRecords {
		if x, ok := strings.CutPrefix(k, paxXattr); ok && carriedXattr(x) {
			// Through the directory's fd: the final name is not
			// followed, and nothing before it is resolved again.
			p := fmt.Sprintf("/proc/self/fd/%d/%s", dir, name)
			if err := unix.Lsetxattr(p, x, []byte(v), 0); err != nil {
				return fmt.Errorf("xattr %s of %s: %w", x, h.Name, err)
			}
		}
	}
	if h.Typeflag != tar.TypeSymlink {
		if err := unix.Fchmodat(dir, name, uint32(h.Mode&0o7777), 0); err != nil {
			return err
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(h.ModTime.UnixNano()), unix.NsecToTimespec(h.ModTime.UnixNano())}
	if !h.AccessTime.IsZero() {
		ts[0] = unix.NsecToTimespec(h.AccessTime.UnixNano())
	}
	return unix.UtimesNanoAt(dir, name, ts, unix.AT_SYMLINK_NOFOLLOW)
}
