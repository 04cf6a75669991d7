// Package privfs gives a process its own view of the directories where a
// host keeps state that is nobody else's business: /tmp, /var/tmp,
// /dev/shm (CRIU's checkpoint images), /run/netns (container network
// namespaces) and any directory the caller names (an agent's state
// directory). Each is covered by a fresh tmpfs in a mount namespace of the
// process's own, so two agents on one machine cannot meet through a path
// they would not share on two real hosts, and whatever they leave there
// vanishes with them.
//
// Go cannot move a whole running process into a new mount namespace:
// unshare(CLONE_NEWNS) only moves the calling thread, and the runtime's
// other threads stay behind. Enter therefore unshares on a locked thread
// and re-executes the binary from it; execve keeps that thread's
// namespace and drops every other thread, so the new image starts with all
// its threads in the new namespace.
package privfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// envFrom carries, across the re-exec, the mount namespace the process
// left; Enter refuses to go on if it is still in it, as covering /tmp
// there would cover the machine's.
const envFrom = "CFLOW_PRIVATE_FS_FROM"

// Covered are the directories every private view covers.
var Covered = []string{"/tmp", "/var/tmp", "/dev/shm", "/run/netns"}

// Enter puts the process into a mount namespace of its own. The first call
// does not return on success: it re-executes the binary with the same
// arguments, and the call in the new image returns nil.
func Enter() error {
	if from, ok := os.LookupEnv(envFrom); ok {
		_ = os.Unsetenv(envFrom) // not for runc, CRIU and their children
		now, err := MountNS("self")
		if err != nil {
			return err
		}
		if now == from {
			return fmt.Errorf("private fs: still in mount namespace %s after the re-exec", now)
		}
		return nil
	}
	// Never unlocked: the thread either execs or reports an error on a
	// thread that may be in the new namespace, which must not be reused.
	runtime.LockOSThread()
	from, err := MountNS("thread-self")
	if err != nil {
		return err
	}
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("private fs: unshare mount namespace: %w", err)
	}
	if err := os.Setenv(envFrom, from); err != nil {
		return err
	}
	// /proc/self/exe, not the path: the binary may be gone or hidden.
	err = syscall.Exec("/proc/self/exe", os.Args, os.Environ())
	return fmt.Errorf("private fs: re-exec: %w", err)
}

// MountNS returns the mount namespace of a /proc entry ("self",
// "thread-self", a pid) as "mnt:[INODE]".
func MountNS(proc string) (string, error) {
	ns, err := os.Readlink(filepath.Join("/proc", proc, "ns/mnt"))
	if err != nil {
		return "", fmt.Errorf("mount namespace of %s: %w", proc, err)
	}
	return ns, nil
}

// Config says what a private view holds besides Covered.
type Config struct {
	// Private are more directories to cover (absolute paths).
	Private []string
	// Keep are paths under covered directories that stay the machine's,
	// bind-mounted back over the cover: the directory of the running
	// binary, which containers and CRIU's hook run from, and the
	// testbed's wiring (its switch's network namespace).
	Keep []string
}

// Setup builds the private view; call it after Enter. The process's
// mounts are made slaves first, so nothing mounted here propagates back to
// the machine (whose / may be a shared mount), while the machine's own
// unmounts still reach here.
func Setup(cfg Config) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("private fs: make mounts slaves: %w", err)
	}
	covers := map[string]string{} // path -> tmpfs mode
	for _, d := range Covered {
		covers[d] = "1777"
	}
	covers["/run/netns"] = "0755"
	for _, d := range cfg.Private {
		if !filepath.IsAbs(d) {
			return fmt.Errorf("private fs: %q is not an absolute path", d)
		}
		covers[filepath.Clean(d)] = "0700"
	}
	paths := make([]string, 0, len(covers))
	for d := range covers {
		paths = append(paths, d)
	}
	// Shallow first, so a cover inside another is made in the new tmpfs.
	sort.Slice(paths, func(i, j int) bool { return len(paths[i]) < len(paths[j]) })

	type kept struct {
		path string
		fd   int
		dir  bool
	}
	var keeps []kept
	defer func() {
		for _, k := range keeps {
			unix.Close(k.fd)
		}
	}()
	for _, k := range cfg.Keep {
		k = filepath.Clean(k)
		if !under(k, paths) {
			continue // not covered: it stays visible as it is
		}
		// Held open, since its path is about to be covered.
		fd, err := unix.Open(k, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("private fs: keep %s: %w", k, err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return fmt.Errorf("private fs: keep %s: %w", k, err)
		}
		keeps = append(keeps, kept{k, fd, st.Mode&unix.S_IFMT == unix.S_IFDIR})
	}
	for _, d := range paths {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("private fs: %w", err)
		}
		if err := unix.Mount("tmpfs", d, "tmpfs", 0, "mode="+covers[d]); err != nil {
			return fmt.Errorf("private fs: tmpfs on %s: %w", d, err)
		}
	}
	for _, k := range keeps {
		if err := os.MkdirAll(filepath.Dir(k.path), 0o755); err != nil {
			return fmt.Errorf("private fs: keep %s: %w", k.path, err)
		}
		var err error
		if k.dir {
			err = os.Mkdir(k.path, 0o755)
		} else {
			var f *os.File
			if f, err = os.OpenFile(k.path, os.O_CREATE|os.O_EXCL, 0o444); err == nil {
				f.Close()
			}
		}
		if err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("private fs: keep %s: %w", k.path, err)
		}
		src := fmt.Sprintf("/proc/self/fd/%d", k.fd)
		if err := unix.Mount(src, k.path, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("private fs: bind %s back: %w", k.path, err)
		}
	}
	return nil
}

func under(p string, dirs []string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}
