// Package cgroupfs works on cgroup directories: it removes the trees
// containers leave, and reads what their tasks use (stats.go).
package cgroupfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// RemoveTree kills every task left in a cgroup directory tree (of any
// hierarchy) and removes it, bottom-up. Tasks can outlive their container's
// network namespace: a CRIU killed early in a restore leaves half-restored
// tasks that never joined it, so killing by namespace misses them, and a
// cgroup with tasks cannot be removed. A frozen cgroup is thawed first, or
// the SIGKILL would not be delivered.
func RemoveTree(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() {
			if err := RemoveTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "freezer.state")); err == nil {
		_ = os.WriteFile(filepath.Join(dir, "freezer.state"), []byte("THAWED"), 0)
	}
	var last error
	for i := 0; i < 100; i++ {
		if b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if last = syscall.Rmdir(dir); last == nil || errors.Is(last, syscall.ENOENT) {
			return nil
		}
		time.Sleep(20 * time.Millisecond) // until the killed tasks are reaped
	}
	return fmt.Errorf("remove cgroup %s: %w", dir, last)
}
