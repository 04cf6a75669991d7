package criu

import (
	"bufio"
	"errors"
	"io"
	"io/fs"
	"os"
	"regexp"

	"golang.org/x/sys/unix"
)

// A restore of a container with its own mount namespace builds the
// container's mounts under a directory CRIU makes with
// mkdtemp("/tmp/.criu.mntns.XXXXXX") — a path compiled into CRIU — and
// removes when it ends, but not when it is killed: each killed restore
// left one behind (soak finding 12). Which one is CRIU's alone to know,
// and other CRIUs on the host make theirs in the same place; but CRIU
// names it in its log (at log level 4, with every mount it plans), so
// the one a given restore made can be removed and no other.
var yardRe = regexp.MustCompile(`/tmp/\.criu\.mntns\.[A-Za-z0-9]{6}`)

// yardScanLimit bounds the reading of a log: the name comes with the
// first mounts planned, in the first few hundred lines.
const yardScanLimit = 4 << 20

// RemoveMountYard removes the mount-namespace directory named in the log
// of a restore whose CRIU has exited, if it is still there. It returns
// the directory it removed ("" if none was left). A directory that is not
// empty is left and reported: it is not what CRIU leaves.
func RemoveMountYard(logPath string) (string, error) {
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
	if dir == "" {
		return "", nil
	}
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
