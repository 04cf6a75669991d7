package cgroupfs

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// CPUTime is the CPU time the tasks of a cgroup have used since it was
// made. dir is its directory in the cpuacct hierarchy (cgroup v1) or in
// the unified one (v2); whichever file is there is read.
func CPUTime(dir string) (time.Duration, error) {
	if b, err := os.ReadFile(filepath.Join(dir, "cpuacct.usage")); err == nil {
		ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s/cpuacct.usage: %w", dir, err)
		}
		return time.Duration(ns), nil
	}
	us, err := statValue(filepath.Join(dir, "cpu.stat"), "usage_usec")
	if err != nil {
		return 0, err
	}
	return time.Duration(us) * time.Microsecond, nil
}

// Memory is what a memory cgroup charges its tasks.
type Memory struct {
	// Usage is everything charged: anonymous memory, page cache, kernel
	// memory.
	Usage int64
	// WorkingSet is Usage less the inactive file cache, which the kernel
	// reclaims first under pressure: what the tasks need to keep running
	// (the figure kubelet and cAdvisor report and evict on).
	WorkingSet int64
}

// ReadMemory reads a cgroup's memory use. dir is its directory in the
// memory hierarchy (v1) or the unified one (v2).
func ReadMemory(dir string) (Memory, error) {
	usageFile, inactiveKey := "memory.usage_in_bytes", "total_inactive_file"
	if _, err := os.Stat(filepath.Join(dir, usageFile)); err != nil {
		usageFile, inactiveKey = "memory.current", "inactive_file"
	}
	b, err := os.ReadFile(filepath.Join(dir, usageFile))
	if err != nil {
		return Memory{}, err
	}
	usage, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return Memory{}, fmt.Errorf("%s/%s: %w", dir, usageFile, err)
	}
	inactive, err := statValue(filepath.Join(dir, "memory.stat"), inactiveKey)
	if err != nil {
		return Memory{}, err
	}
	return Memory{Usage: usage, WorkingSet: max(usage-inactive, 0)}, nil
}

// statValue reads one "key value" line of a cgroup stat file.
func statValue(path, key string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s", path, key)
}
