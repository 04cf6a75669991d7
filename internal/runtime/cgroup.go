package runtime

import (
	"errors"
	"path/filepath"

	"github.com/containerflow/containerflow/internal/cgroupfs"
)

// removeCgroups removes the container's cgroup in every hierarchy.
func (r *Runtime) removeCgroups(name string) error {
	// Thawed first: a frozen task cannot die, and the other hierarchies
	// would wait for it in vain.
	_ = r.Thaw(name)
	dirs, _ := filepath.Glob(filepath.Join(cgroupRoot, "*", r.cgroupsPath(name)))
	dirs = append(dirs, filepath.Join(cgroupRoot, r.cgroupsPath(name)))
	var errs []error
	for _, d := range dirs {
		if err := cgroupfs.RemoveTree(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
