package runtime

import (
	"context"
	"path/filepath"
	"time"
)

// Reference is a bare checkpoint and restore of a container on its own
// host: CRIU started for each (as `criu dump` and `criu restore` would be),
// no transfer, no network steps. A migration's time to ready is held
// against it (docs/migration.md).
type Reference struct {
	Dump    time.Duration `json:"dump_ns"`    // freeze + CRIU start + dump
	Restore time.Duration `json:"restore_ns"` // CRIU start + restore
}

// CheckpointRestoreInPlace measures the Reference of a running container,
// which goes on running from the restored copy. A failed dump thaws it; a
// failed restore loses it (as a failed restore of a migration would,
// without a rollback).
func (r *Runtime) CheckpointRestoreInPlace(ctx context.Context, s Spec, dir string) (Reference, error) {
	var ref Reference
	o := DirectOpts{ImagesDir: filepath.Join(dir, "images"), WorkDir: filepath.Join(dir, "work")}
	t0 := time.Now()
	if err := r.Freeze(s.Name, 5*time.Second); err != nil {
		return ref, err
	}
	d, err := r.PrepareDump(ctx, s.Name, o)
	if err == nil {
		err = d.Dump(ctx)
	}
	if err != nil {
		_ = r.Thaw(s.Name)
		return ref, err
	}
	t1 := time.Now()
	o.WorkDir = filepath.Join(dir, "work-restore")
	rs, err := r.PrepareRestore(s, o)
	if err != nil {
		return ref, err
	}
	if _, err := rs.Restore(ctx, nil); err != nil {
		return ref, err
	}
	ref.Dump, ref.Restore = t1.Sub(t0), time.Since(t1)
	return ref, nil
}
