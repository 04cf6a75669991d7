package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// What a direct restore needs made before the images arrive.

// makeMountpoints creates what runc would have created in a fresh rootfs:
// a directory or file for every mount not inside a tmpfs (CRIU restores
// those with their content).
func makeMountpoints(rootfs string, ms []specs.Mount) error {
	var tmpfs []string
	for _, m := range ms {
		if m.Type == "tmpfs" {
			tmpfs = append(tmpfs, m.Destination+"/")
		}
	}
next:
	for _, m := range ms {
		for _, t := range tmpfs {
			if strings.HasPrefix(m.Destination, t) {
				continue next
			}
		}
		p := filepath.Join(rootfs, m.Destination)
		if m.Type == "bind" {
			if fi, err := os.Stat(m.Source); err == nil && !fi.IsDir() {
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					return err
				}
				f, err := os.OpenFile(p, os.O_CREATE|os.O_RDONLY, 0o644)
				if err != nil {
					return err
				}
				f.Close()
				continue
			}
		}
		if err := os.MkdirAll(p, 0o755); err != nil {
			return fmt.Errorf("mount point %s: %w", m.Destination, err)
		}
	}
	return nil
}

// cgroupV1Hierarchies are the hierarchies runc puts a container in here.
func cgroupV1Hierarchies() []string {
	ents, _ := os.ReadDir(cgroupRoot)
	var out []string
	for _, e := range ents {
		if e.IsDir() && e.Name() != "unified" {
			if _, err := os.Stat(filepath.Join(cgroupRoot, e.Name(), "cgroup.procs")); err == nil {
				out = append(out, e.Name())
			}
		}
	}
	return out
}

// runc's default device rules: create any node, use the harmless ones.
var allowedDevices = []string{"c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
	"c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm", "c 10:200 rwm"}

// makeCgroups creates the container's cgroups as runc would (cgroup v1),
// with its memory limit, and returns their directories. Its CPU limit
// comes after the restore (setCPULimit): CRIU restores from inside these
// cgroups, and under a quota of 0.1 CPU a restore of 60 ms took 470.
func (r *Runtime) makeCgroups(s Spec) ([]string, error) {
	limits := map[string]string{}
	if m := s.Resources.MemoryBytes; m > 0 {
		limits["memory.limit_in_bytes"] = strconv.FormatInt(m, 10)
	}
	var dirs []string
	for _, h := range cgroupV1Hierarchies() {
		d := filepath.Join(cgroupRoot, h, r.cgroupsPath(s.Name))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("cgroup %s: %w", d, err)
		}
		switch h {
		case "cpuset":
			// A new cpuset has no CPUs and no memory nodes until given some.
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if err := inheritCgroupFile(d, f); err != nil {
					return nil, err
				}
			}
		case "devices":
			if err := os.WriteFile(filepath.Join(d, "devices.deny"), []byte("a"), 0); err != nil {
				return nil, err
			}
			for _, rule := range allowedDevices {
				if err := os.WriteFile(filepath.Join(d, "devices.allow"), []byte(rule), 0); err != nil {
					return nil, fmt.Errorf("device rule %q: %w", rule, err)
				}
			}
		}
		for _, f := range []string{"memory.limit_in_bytes"} {
			v, ok := limits[f]
			if _, err := os.Stat(filepath.Join(d, f)); !ok || err != nil {
				continue
			}
			if err := os.WriteFile(filepath.Join(d, f), []byte(v), 0); err != nil {
				return nil, fmt.Errorf("cgroup limit %s=%s: %w", f, v, err)
			}
		}
		dirs = append(dirs, d)
	}
	if len(dirs) == 0 {
		return nil, errors.New("no cgroup v1 hierarchy found")
	}
	return dirs, nil
}

// setCPULimit applies a container's CPU quota to its cgroups (those of
// the cpu hierarchy have the files).
func setCPULimit(dirs []string, res Resources) error {
	q := res.cpuQuota()
	if q <= 0 {
		return nil
	}
	return writeCPUQuota(dirs, q)
}

// SetCPULimit sets a running container's CPU quota: res's, or none when
// res has no CPU limit. A source lifts it while its container is frozen:
// the tasks cannot run then, but CRIU's parasite runs inside them and was
// throttled with them (a dump under --cpus 0.05 took most of a second).
func (r *Runtime) SetCPULimit(name string, res Resources) error {
	var dirs []string
	for _, h := range cgroupV1Hierarchies() {
		dirs = append(dirs, filepath.Join(cgroupRoot, h, r.cgroupsPath(name)))
	}
	q := res.cpuQuota()
	if q <= 0 {
		q = -1
	}
	return writeCPUQuota(dirs, q)
}

func writeCPUQuota(dirs []string, q int64) error {
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "cpu.cfs_quota_us")); err != nil {
			continue
		}
		// The period first: the kernel checks the quota against it.
		for _, kv := range [][2]string{{"cpu.cfs_period_us", strconv.Itoa(cpuPeriod)}, {"cpu.cfs_quota_us", strconv.FormatInt(q, 10)}} {
			if err := os.WriteFile(filepath.Join(d, kv[0]), []byte(kv[1]), 0); err != nil {
				return fmt.Errorf("cgroup limit %s=%s: %w", kv[0], kv[1], err)
			}
		}
	}
	return nil
}

// inheritCgroupFile copies file from the nearest ancestor that has it set,
// down to d.
func inheritCgroupFile(d, file string) error {
	if b, err := os.ReadFile(filepath.Join(d, file)); err == nil && strings.TrimSpace(string(b)) != "" {
		return nil
	}
	parent := filepath.Dir(d)
	if err := inheritCgroupFile(parent, file); err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(parent, file))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(d, file), b, 0)
}
