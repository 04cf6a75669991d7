package nsrun

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ErrExists is returned by Create when the named namespace already exists.
var ErrExists = errors.New("network namespace already exists")

// Create makes a new named network namespace without leaving the calling
// thread in it (netns.NewNamed would).
func Create(name string) error {
	if _, err := os.Lstat(Path(name)); err == nil {
		return fmt.Errorf("create netns %s: %w", name, ErrExists)
	}
	err := onThreadIn(func() error {
		h, err := netns.NewNamed(name) // creates it and moves the thread into it
		if err == nil {
			h.Close()
		}
		return err
	}, func() error { return nil })
	if err != nil {
		return fmt.Errorf("create netns %s: %w", name, err)
	}
	return nil
}

// Exists reports whether the named namespace is present.
func Exists(name string) bool {
	_, err := os.Lstat(Path(name))
	return err == nil
}

// List returns the names under /run/netns that start with prefix.
func List(prefix string) ([]string, error) {
	ents, err := os.ReadDir(NetnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", NetnsDir, err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// Inode returns the namespace inode number behind a named namespace, which is
// what /proc/PID/ns/net links show as "net:[INODE]".
func Inode(name string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(Path(name), &st); err != nil {
		return 0, fmt.Errorf("stat netns %s: %w", name, err)
	}
	return st.Ino, nil
}

// Pids returns the processes whose network namespace is the named one.
func Pids(name string) ([]int, error) {
	ino, err := Inode(name)
	if err != nil {
		return nil, err
	}
	return pidsInNetns(ino)
}

func pidsInNetns(ino uint64) ([]int, error) {
	want := "net:[" + strconv.FormatUint(ino, 10) + "]"
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		link, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns/net"))
		if err == nil && link == want {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// KillAll sends SIGKILL to every process in the named namespace and waits up
// to timeout for them to be gone. Processes that are our own children are
// reaped elsewhere; zombies do not hold the namespace's name, so they are
// not waited for.
func KillAll(name string, timeout time.Duration) error {
	ino, err := Inode(name)
	if err != nil {
		return err
	}
	live, err := KillUntilGone(func() ([]int, error) { return pidsInNetns(ino) }, timeout)
	if err == nil && live > 0 {
		err = fmt.Errorf("netns %s: %d processes still alive after SIGKILL", name, live)
	}
	return err
}

// KillUntilGone sends SIGKILL to the processes list returns (but this one
// and zombies) until it returns none or timeout passes; it returns how
// many were still alive then.
func KillUntilGone(list func() ([]int, error), timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		pids, err := list()
		if err != nil {
			return 0, err
		}
		live := 0
		for _, pid := range pids {
			if pid == os.Getpid() || isZombie(pid) {
				continue
			}
			live++
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if live == 0 || time.Now().After(deadline) {
			return live, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true // gone
	}
	// The state follows the parenthesised command name, which may contain spaces.
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}

// Delete kills the namespace's processes and removes its name. It is
// idempotent: a missing namespace is not an error, and a name file left
// behind by a crash before its bind mount is removed too.
func Delete(name string) error {
	p := Path(name)
	if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := KillAll(name, 3*time.Second); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		return fmt.Errorf("unmount netns %s: %w", name, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove netns %s: %w", name, err)
	}
	return nil
}

// Sysctl writes a value under /proc/sys inside the namespace; net.* keys
// are per namespace and are resolved against the opener's namespace.
func Sysctl(nsName, key, value string) error {
	path := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	return Do(nsName, func() error {
		if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s in %s: %w", key, value, nsName, err)
		}
		return nil
	})
}
