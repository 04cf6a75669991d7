package runtime

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/containerflow/containerflow/internal/cgroupfs"
)

// Usage is what a container's tasks have used, read from its cgroups.
type Usage struct {
	CPUTime time.Duration // since its cgroup was made (a restore makes a new one)
	Memory  cgroupfs.Memory
}

// Usage reads a container's CPU time and memory. The cgroup v1 cpuacct and
// memory hierarchies are where runc and the direct engine put containers
// here; the unified directory is the fallback, as for the freezer.
func (r *Runtime) Usage(name string) (Usage, error) {
	v2 := filepath.Join(cgroupRoot, r.cgroupsPath(name))
	cpu, err := cgroupfs.CPUTime(filepath.Join(cgroupRoot, "cpuacct", r.cgroupsPath(name)))
	if err != nil {
		if cpu, err = cgroupfs.CPUTime(v2); err != nil {
			return Usage{}, fmt.Errorf("%w: no cpu accounting cgroup for %s", ErrNotFound, name)
		}
	}
	mem, err := cgroupfs.ReadMemory(filepath.Join(cgroupRoot, "memory", r.cgroupsPath(name)))
	if err != nil {
		if mem, err = cgroupfs.ReadMemory(v2); err != nil {
			return Usage{}, fmt.Errorf("%w: no memory cgroup for %s", ErrNotFound, name)
		}
	}
	return Usage{CPUTime: cpu, Memory: mem}, nil
}
