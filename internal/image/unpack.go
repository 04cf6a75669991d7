package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// unpacker writes a flattened tar stream (the output of mutate.Extract,
// whiteouts already applied) under a root directory. Every path is
// resolved with openat2(RESOLVE_IN_ROOT), so neither ".." nor a symlink
// in the image (absolute or relative) can make a write land outside root:
// a symlink is followed as the container would see it, inside the root.
type unpacker struct {
	root   string
	rootFd int
	size   int64
	// Directory times are set last: creating entries in a directory
	// changes its mtime.
	dirs []*tar.Header
	// The flattened stream lists upper layers first, so a hard link can
	// come before the file it links to; such links are made at the end.
	links []*tar.Header
	// Device nodes skipped because this process may not create them.
	skippedDevices int
}

func unpack(ctx context.Context, r io.Reader, root string) (*unpacker, error) {
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open rootfs %s: %w", root, err)
	}
	u := &unpacker{root: root, rootFd: fd}
	defer unix.Close(fd)
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			// mutate.Extract ends the tar stream cleanly also when it
			// failed (a deferred Close writes the trailer), and reports
			// the failure only on the pipe after it.
			if _, err := io.Copy(io.Discard, r); err != nil {
				return nil, fmt.Errorf("flattening layers: %w", err)
			}
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading flattened layers: %w", err)
		}
		if err := u.entry(ctx, h, tr); err != nil {
			return nil, fmt.Errorf("unpacking %q: %w", h.Name, err)
		}
	}
	for _, h := range u.links {
		if err := u.link(h, true); err != nil {
			return nil, fmt.Errorf("unpacking %q: %w", h.Name, err)
		}
	}
	for i := len(u.dirs) - 1; i >= 0; i-- {
		if err := u.setTimes(u.dirs[i]); err != nil {
			return nil, fmt.Errorf("unpacking %q: %w", u.dirs[i].Name, err)
		}
	}
	return u, nil
}

// clean turns an archive name into a path relative to the root; "." is the
// root itself. A leading "/" means the root (some tools write those).
func clean(name string) string {
	p := strings.TrimPrefix(path.Clean("/"+name), "/")
	if p == "" {
		return "."
	}
	return p
}

// escapes says whether a name climbs out of the root with "..".
func escapes(name string) bool {
	p := path.Clean(strings.TrimLeft(name, "/"))
	return p == ".." || strings.HasPrefix(p, "../")
}

func (u *unpacker) entry(ctx context.Context, h *tar.Header, r io.Reader) error {
	if escapes(h.Name) || (h.Typeflag == tar.TypeLink && escapes(h.Linkname)) {
		return errors.New("path escapes the image root (path traversal)")
	}
	name := clean(h.Name)
	h.Name = name
	if name == "." {
		if h.Typeflag == tar.TypeDir {
			return u.meta(u.rootFd, "", h)
		}
		return nil
	}
	dir, err := u.openDir(path.Dir(name), true)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	base := path.Base(name)

	var st unix.Stat_t
	exists := unix.Fstatat(dir, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
	if exists {
		// mutate.Extract emits each path once, so what is there is a
		// directory made for an entry of an upper layer that came first:
		// the upper layer's view wins, only a directory entry's own
		// metadata is taken.
		if h.Typeflag == tar.TypeDir && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			u.dirs = append(u.dirs, h)
			return u.meta(dir, base, h)
		}
		return nil
	}

	switch h.Typeflag {
	case tar.TypeDir:
		if err := unix.Mkdirat(dir, base, 0o700); err != nil {
			return err
		}
		u.dirs = append(u.dirs, h)
		return u.meta(dir, base, h)
	case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // old archives still use TypeRegA
		return u.file(ctx, dir, base, h, r)
	case tar.TypeSymlink:
		if err := unix.Symlinkat(h.Linkname, dir, base); err != nil {
			return err
		}
		if err := unix.Fchownat(dir, base, h.Uid, h.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		return u.setTimesAt(dir, base, h)
	case tar.TypeLink:
		return u.link(h, false)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := uint32(unix.S_IFIFO)
		switch h.Typeflag {
		case tar.TypeChar:
			mode = unix.S_IFCHR
		case tar.TypeBlock:
			mode = unix.S_IFBLK
		}
		dev := int(unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor)))
		if err := unix.Mknodat(dir, base, mode|0o600, dev); err != nil {
			if errors.Is(err, unix.EPERM) && h.Typeflag != tar.TypeFifo {
				u.skippedDevices++ // unprivileged: the runtime provides /dev anyway
				return nil
			}
			return err
		}
		return u.meta(dir, base, h)
	}
	// Sockets and vendor types have no meaning in an image.
	return nil
}

// openDir opens a directory of the rootfs, resolved inside the root,
// creating missing ones (with mode 0755, owned by root, as container
// engines do for parents an image does not list).
func (u *unpacker) openDir(rel string, create bool) (int, error) {
	if rel == "." {
		return unix.Dup(u.rootFd)
	}
	fd, err := unix.Openat2(u.rootFd, rel, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if !errors.Is(err, unix.ENOENT) || !create {
		return fd, err
	}
	parent, err := u.openDir(path.Dir(rel), true)
	if err != nil {
		return -1, err
	}
	err = unix.Mkdirat(parent, path.Base(rel), 0o755)
	unix.Close(parent)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, err
	}
	return u.openDir(rel, false)
}

func (u *unpacker) file(ctx context.Context, dir int, base string, h *tar.Header, r io.Reader) error {
	fd, err := unix.Openat(dir, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), base)
	defer f.Close()
	n, err := io.Copy(f, ctxReader{ctx, r})
	if err != nil {
		return err
	}
	u.size += n
	if err := u.meta(fd, "", h); err != nil {
		return err
	}
	return nil
}

// link makes a hard link; last says the whole stream has been read, so a
// missing target is an error rather than a target still to come.
func (u *unpacker) link(h *tar.Header, last bool) error {
	target := clean(h.Linkname)
	tdir, err := u.openDir(path.Dir(target), false)
	if errors.Is(err, unix.ENOENT) && !last {
		u.links = append(u.links, h)
		return nil
	}
	if err != nil {
		return fmt.Errorf("hard link target %q: %w", h.Linkname, err)
	}
	defer unix.Close(tdir)
	dir, err := u.openDir(path.Dir(h.Name), true)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	// Flags 0: a symlink as target is linked itself, never followed.
	err = unix.Linkat(tdir, path.Base(target), dir, path.Base(h.Name), 0)
	if errors.Is(err, unix.ENOENT) && !last {
		u.links = append(u.links, h)
		return nil
	}
	if err != nil {
		return fmt.Errorf("hard link to %q: %w", h.Linkname, err)
	}
	return nil
}

// meta sets owner, mode and extended attributes, in that order: chown
// clears the setuid bits and file capabilities set before it. base ""
// means fd itself.
func (u *unpacker) meta(fd int, base string, h *tar.Header) error {
	flags := 0
	if base == "" {
		flags = unix.AT_EMPTY_PATH
	}
	if err := unix.Fchownat(fd, base, h.Uid, h.Gid, flags|unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown %d:%d: %w", h.Uid, h.Gid, err)
	}
	if base != "" && h.Typeflag != tar.TypeDir {
		// A FIFO or device node: opening one can block or act on a
		// device, so it is changed by name (we just made it: no symlink).
		if err := unix.Fchmodat(fd, base, uint32(h.Mode&0o7777), 0); err != nil {
			return err
		}
		return u.setTimesAt(fd, base, h)
	}
	// A directory is reopened so that mode and xattrs go by fd.
	ofd := fd
	if base != "" {
		var err error
		ofd, err = unix.Openat(fd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(ofd)
	}
	if h.Typeflag == tar.TypeDir && ofd == u.rootFd {
		// The root fd is O_PATH: fchmod needs a real one.
		return os.Chmod(u.root, os.FileMode(h.Mode&0o777)|modeBits(h.Mode))
	}
	if err := unix.Fchmod(ofd, uint32(h.Mode&0o7777)); err != nil {
		return fmt.Errorf("chmod %o: %w", h.Mode, err)
	}
	for k, v := range h.PAXRecords {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok {
			continue
		}
		if err := unix.Fsetxattr(ofd, name, []byte(v), 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
			return fmt.Errorf("xattr %s: %w", name, err)
		}
	}
	if h.Typeflag != tar.TypeDir {
		return u.setTimesAt(ofd, "", h)
	}
	return nil
}

func modeBits(m int64) os.FileMode {
	var b os.FileMode
	if m&0o4000 != 0 {
		b |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		b |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		b |= os.ModeSticky
	}
	return b
}

func (u *unpacker) setTimes(h *tar.Header) error {
	if h.Name == "." {
		return u.setTimesAt(u.rootFd, "", h)
	}
	dir, err := u.openDir(path.Dir(h.Name), false)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	return u.setTimesAt(dir, path.Base(h.Name), h)
}

func (u *unpacker) setTimesAt(fd int, base string, h *tar.Header) error {
	at := h.AccessTime
	if at.IsZero() {
		at = h.ModTime
	}
	ts := []unix.Timespec{unix.NsecToTimespec(at.UnixNano()), unix.NsecToTimespec(h.ModTime.UnixNano())}
	if h.ModTime.IsZero() {
		return nil
	}
	flags := unix.AT_SYMLINK_NOFOLLOW
	if base == "" {
		// utimensat has no AT_EMPTY_PATH; /proc/self/fd names the inode.
		return unix.UtimesNanoAt(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), ts, 0)
	}
	return unix.UtimesNanoAt(fd, base, ts, flags)
}

// ctxReader ends a copy when its context is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
