package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/containerflow/containerflow/internal/mounts"
)

// The lifecycle of containers the direct engine restored, which runc does
// not know (see direct.go).

// directStateName is the runtime's record of a directly restored container.
const directStateName = "direct-state.json"

// directState is what the runtime knows of a container runc does not.
type directState struct {
	Pid       int       `json:"pid"`
	StartTime uint64    `json:"start_time"` // /proc/PID/stat field 22: guards against pid reuse
	Created   time.Time `json:"created"`
}

func nsInode(pid int, ns string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, ns), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// procStat returns field 3 (the state: "R", "S", "Z"...) and field 22
// (the start time, which tells a pid's reuse) of /proc/PID/stat; the
// fields are counted after the parenthesised command, which may contain
// spaces.
func procStat(pid int) (state string, start uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, err
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return "", 0, errors.New("bad stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return "", 0, errors.New("bad stat")
	}
	_, err = fmt.Sscan(f[19], &start)
	return f[0], start, err
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// readDirect returns the runtime's record of a directly restored
// container, if it has one.
func (r *Runtime) readDirect(name string) (directState, bool) {
	var d directState
	b, err := os.ReadFile(filepath.Join(r.BundleDir(name), directStateName))
	if err != nil || json.Unmarshal(b, &d) != nil {
		return d, false
	}
	return d, true
}

// directStatus says whether the recorded init still runs.
func (r *Runtime) directStatus(name string, d directState) string {
	if state, start, err := procStat(d.Pid); err != nil || start != d.StartTime || state == "Z" {
		return "stopped"
	}
	if r.Frozen(name) {
		return "paused"
	}
	return "running"
}

// ResumeStopped continues a container a dump left stopped
// (DirectOpts.LeaveStopped). The caller first takes its sockets out of
// repair mode and lifts the network lock.
func (r *Runtime) ResumeStopped(name string) error {
	pids, err := r.cgroupPids(name)
	if err != nil {
		return err
	}
	if len(pids) == 0 {
		return fmt.Errorf("%w: %s has no tasks left", ErrNotFound, name)
	}
	var errs []error
	for _, p := range pids {
		if err := unix.Kill(p, unix.SIGCONT); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// cgroupPids lists the tasks of the container's freezer cgroup.
func (r *Runtime) cgroupPids(name string) ([]int, error) {
	f, _, err := r.freezerFile(name)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(f), "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, s := range strings.Fields(string(b)) {
		var p int
		if _, err := fmt.Sscan(s, &p); err == nil {
			pids = append(pids, p)
		}
	}
	return pids, nil
}

// RestoredDirectly says whether the direct engine restored the container
// (runc does not know it).
func (r *Runtime) RestoredDirectly(name string) bool {
	_, ok := r.readDirect(name)
	return ok
}

// removeDirect forgets a directly restored container; the caller removes
// its tasks (with its cgroups) and bundle.
func (r *Runtime) removeDirect(name string) {
	_ = os.Remove(filepath.Join(r.BundleDir(name), directStateName))
	_ = mounts.RemoveAll(filepath.Join(r.BundleDir(name), "criu-root"))
}

// MemoryBytes is the container's anonymous memory (what a checkpoint must
// copy), from its memory cgroup.
func (r *Runtime) MemoryBytes(name string) (int64, error) {
	for _, f := range []struct{ path, key string }{
		{filepath.Join(cgroupRoot, "memory", r.cgroupsPath(name), "memory.stat"), "total_rss"},
		{filepath.Join(cgroupRoot, r.cgroupsPath(name), "memory.stat"), "anon"},
	} {
		b, err := os.ReadFile(f.path)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, " "); ok && k == f.key {
				var n int64
				_, err := fmt.Sscan(v, &n)
				return n, err
			}
		}
	}
	return 0, fmt.Errorf("%w: no memory cgroup for %s", ErrNotFound, name)
}
