package criu

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A restore of a container with its own mount namespace builds the
// container's mounts under a directory CRIU makes with
// mkdtemp("/tmp/.criu.mntns.XXXXXX") — a path compiled into CRIU — and
// removes when it ends, but not when it is killed: each killed restore
// left one behind (soak finding 12). Which one is CRIU's alone to know,
// and other CRIUs on the host make theirs in the same place; but CRIU
// names it in its log (at log level 4, with every mount it plans), so
// the one a given restore made can be removed and no other. The log names
// it a fraction of a millisecond after making it; a YardWatch, where the
// kernel allows one, also catches a CRIU killed in between.
var yardRe = regexp.MustCompile(`/tmp/\.criu\.mntns\.[A-Za-z0-9]{6}`)

// yardScanLimit bounds the reading of a log: the name comes with the
// first mounts planned, in the first few hundred lines.
const yardScanLimit = 4 << 20

// RemoveMountYard removes the mount-namespace directory named in the log
// of a restore whose CRIU has exited, if it is still there. It returns
// the directory it removed ("" if none was left). A directory that is not
// empty is left and reported: it is not what CRIU leaves.
func RemoveMountYard(logPath string) (string, error) {
	dir, err := yardInLog(logPath)
	if dir == "" || err != nil {
		return "", err
	}
	return removeYard(dir)
}

// yardInLog returns the mount directory a CRIU log names, if any.
func yardInLog(logPath string) (string, error) {
	f, err := os.Open(logPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil
		}
		return "", err
	}
	defer f.Close()
	var dir string
	sc := bufio.NewScanner(io.LimitReader(f, yardScanLimit))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if m := yardRe.Find(sc.Bytes()); m != nil {
			dir = string(m)
			break
		}
	}
	return dir, nil
}

func removeYard(dir string) (string, error) {
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return "", nil // CRIU removed it
	}
	// CRIU mounts its yard in the restored tasks' namespace, not in its
	// own; a mount here would be left by a CRIU older than that.
	_ = unix.Unmount(dir, unix.MNT_DETACH)
	if err := os.Remove(dir); err != nil {
		return "", err
	}
	return dir, nil
}

// A YardWatch records the /tmp/.criu.mntns.* directories one process
// makes, from the kernel's own account (fanotify reports the creating
// pid): started before a restore's request, it names the directory even
// when CRIU dies before logging it.
type YardWatch struct {
	fd   int
	pid  int
	made []made
}

type made struct {
	pid int
	dir string
}

// WatchYards starts watching /tmp for directories pid makes. It fails
// where fanotify cannot report names (no CAP_SYS_ADMIN, or a /tmp without
// file handles): the log is then the only account.
func WatchYards(pid int) (*YardWatch, error) {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK|unix.FAN_REPORT_DFID_NAME, unix.O_RDONLY)
	if err != nil {
		return nil, fmt.Errorf("fanotify: %w", err)
	}
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD, unix.FAN_CREATE|unix.FAN_ONDIR, unix.AT_FDCWD, "/tmp"); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("fanotify mark /tmp: %w", err)
	}
	return &YardWatch{fd: fd, pid: pid}, nil
}

// Remove removes, once the process has exited, the mount directories it
// made and left (see RemoveMountYard), and stops watching. It returns
// what it removed.
func (y *YardWatch) Remove() ([]string, error) {
	dirs := y.MadeBy(y.pid)
	unix.Close(y.fd)
	var removed []string
	var errs []error
	for _, d := range dirs {
		r, err := removeYard(d)
		if err != nil {
			errs = append(errs, err)
		} else if r != "" {
			removed = append(removed, r)
		}
	}
	return removed, errors.Join(errs...)
}

// MadeBy returns the mount directories pid has made since the watch
// began: the watch hears every process's, so that one started before a
// process exists can still name what it made.
func (y *YardWatch) MadeBy(pid int) []string {
	y.drain()
	var dirs []string
	for _, m := range y.made {
		if m.pid == pid {
			dirs = append(dirs, m.dir)
		}
	}
	return dirs
}

// Close stops watching.
func (y *YardWatch) Close() { unix.Close(y.fd) }

const metaSize = uint32(unsafe.Sizeof(unix.FanotifyEventMetadata{}))

// drain reads the events queued so far (the fd does not block).
func (y *YardWatch) drain() {
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(y.fd, buf)
		if n <= 0 || err != nil {
			return
		}
		for b := buf[:n]; len(b) >= int(metaSize); {
			m := (*unix.FanotifyEventMetadata)(unsafe.Pointer(&b[0]))
			if m.Event_len < metaSize || int(m.Event_len) > len(b) || uint32(m.Metadata_len) > m.Event_len {
				break
			}
			if name := eventName(b[m.Metadata_len:m.Event_len]); strings.HasPrefix(name, ".criu.mntns.") {
				y.made = append(y.made, made{int(m.Pid), "/tmp/" + name})
			}
			b = b[m.Event_len:]
		}
	}
}

// eventName is the name in an event's DFID_NAME information record:
// after its header (type, pad, length), the directory's fsid (8 bytes)
// and file handle (bytes and type, 4 each, then the handle), a
// NUL-terminated name.
func eventName(info []byte) string {
	for len(info) >= 4 {
		typ, l := info[0], int(binary.NativeEndian.Uint16(info[2:4]))
		if l < 4 || l > len(info) {
			return ""
		}
		rec := info[:l]
		if typ == unix.FAN_EVENT_INFO_TYPE_DFID_NAME && len(rec) >= 4+8+8 {
			hb := int(binary.NativeEndian.Uint32(rec[12:16]))
			if off := 4 + 8 + 8 + hb; off < len(rec) {
				name := rec[off:]
				if i := bytes.IndexByte(name, 0); i >= 0 {
					name = name[:i]
				}
				return string(name)
			}
		}
		info = info[l:]
	}
	return ""
}
