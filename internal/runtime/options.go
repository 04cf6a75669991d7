package runtime

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/containerflow/containerflow/internal/criu"
)

// User is the uid and gid the container's first process runs as; the zero
// value is root.
type User struct {
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
}

// ParseUser reads UID[:GID]. Names are refused: the container may see
// another /etc/passwd (an image's) than the host, so a name could resolve
// differently on the two sides of a migration. Without GID, GID = UID.
func ParseUser(s string) (User, error) {
	us, gs, hasG := strings.Cut(s, ":")
	uid, err := strconv.ParseUint(us, 10, 32)
	if err != nil {
		return User{}, fmt.Errorf("%w: user %q: want numeric UID[:GID]", ErrBadSpec, s)
	}
	gid := uid
	if hasG {
		if gid, err = strconv.ParseUint(gs, 10, 32); err != nil {
			return User{}, fmt.Errorf("%w: user %q: want numeric UID[:GID]", ErrBadSpec, s)
		}
	}
	return User{UID: uint32(uid), GID: uint32(gid)}, nil
}

func (u User) String() string { return fmt.Sprintf("%d:%d", u.UID, u.GID) }

// Rlimit is one resource limit, as in the OCI spec.
type Rlimit struct {
	Type string `json:"type"` // RLIMIT_NOFILE, ...
	Soft uint64 `json:"soft"`
	Hard uint64 `json:"hard"`
}

// rlimitNames are docker's --ulimit names.
var rlimitNames = map[string]int{
	"core": unix.RLIMIT_CORE, "cpu": unix.RLIMIT_CPU, "data": unix.RLIMIT_DATA, "fsize": unix.RLIMIT_FSIZE,
	"locks": unix.RLIMIT_LOCKS, "memlock": unix.RLIMIT_MEMLOCK, "msgqueue": unix.RLIMIT_MSGQUEUE,
	"nice": unix.RLIMIT_NICE, "nofile": unix.RLIMIT_NOFILE, "nproc": unix.RLIMIT_NPROC, "rss": unix.RLIMIT_RSS,
	"rtprio": unix.RLIMIT_RTPRIO, "rttime": unix.RLIMIT_RTTIME, "sigpending": unix.RLIMIT_SIGPENDING,
	"stack": unix.RLIMIT_STACK, "as": unix.RLIMIT_AS,
}

// ParseUlimit reads NAME=SOFT[:HARD] (docker's --ulimit); HARD defaults to
// SOFT, and -1 or "unlimited" mean no limit.
func ParseUlimit(s string) (Rlimit, error) {
	name, vals, ok := strings.Cut(s, "=")
	if _, known := rlimitNames[name]; !ok || !known {
		return Rlimit{}, fmt.Errorf("%w: ulimit %q: want NAME=SOFT[:HARD] with NAME one of %s", ErrBadSpec, s, strings.Join(ulimitNames(), ", "))
	}
	ss, hs, hasH := strings.Cut(vals, ":")
	soft, err := parseLimit(ss)
	if err != nil {
		return Rlimit{}, fmt.Errorf("%w: ulimit %q: %v", ErrBadSpec, s, err)
	}
	hard := soft
	if hasH {
		if hard, err = parseLimit(hs); err != nil {
			return Rlimit{}, fmt.Errorf("%w: ulimit %q: %v", ErrBadSpec, s, err)
		}
	}
	if soft > hard {
		return Rlimit{}, fmt.Errorf("%w: ulimit %q: soft limit above hard limit", ErrBadSpec, s)
	}
	return Rlimit{Type: "RLIMIT_" + strings.ToUpper(name), Soft: soft, Hard: hard}, nil
}

func ulimitNames() []string {
	var ns []string
	for n := range rlimitNames {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	return ns
}

func parseLimit(s string) (uint64, error) {
	if s == "-1" || s == "unlimited" {
		return unix.RLIM_INFINITY, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	return v, nil
}

// rlimitResource maps RLIMIT_NAME to its number.
func rlimitResource(typ string) (int, bool) {
	r, ok := rlimitNames[strings.ToLower(strings.TrimPrefix(typ, "RLIMIT_"))]
	return r, ok
}

// DefaultNofile is the open-files limit containers get unless told
// otherwise: runc spec's 1024 caps a server near 1000 connections, so as
// much as the runtime's own hard limit allows, up to this.
const DefaultNofile = 1 << 20

// rlimits are the limits of a container: the defaults, overridden by the
// spec's. A hard limit above the runtime's own can only be set with
// CAP_SYS_RESOURCE, and CRIU restores the limits as they were, so the
// check is made on both sides of a migration, before any freeze.
func (s Spec) rlimits() ([]Rlimit, error) {
	var own unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &own); err != nil {
		return nil, err
	}
	n := min(own.Max, DefaultNofile)
	out := []Rlimit{{Type: "RLIMIT_NOFILE", Soft: n, Hard: n}}
	for _, l := range s.Rlimits {
		res, ok := rlimitResource(l.Type)
		if !ok {
			return nil, fmt.Errorf("%w: unknown rlimit %q", ErrBadSpec, l.Type)
		}
		if l.Soft > l.Hard {
			return nil, fmt.Errorf("%w: %s: soft limit %d above hard limit %d", ErrBadSpec, l.Type, l.Soft, l.Hard)
		}
		var cur unix.Rlimit
		if err := unix.Getrlimit(res, &cur); err != nil {
			return nil, err
		}
		if ok, _ := criu.HasSysResource(); l.Hard > cur.Max && !ok {
			return nil, fmt.Errorf("%w: %s hard limit %s is above this host's %s, and raising it needs CAP_SYS_RESOURCE, which root lacks here",
				ErrBadSpec, l.Type, limitString(l.Hard), limitString(cur.Max))
		}
		replaced := false
		for i := range out {
			if out[i].Type == l.Type {
				out[i], replaced = l, true
			}
		}
		if !replaced {
			out = append(out, l)
		}
	}
	return out, nil
}

func limitString(v uint64) string {
	if v == unix.RLIM_INFINITY {
		return "unlimited"
	}
	return strconv.FormatUint(v, 10)
}

// Volume is a host path bind-mounted into the container. A migration
// needs the same path on the destination: the agent checks it while
// preparing, before anything is frozen. What is in it is not copied.
type Volume struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

// ParseVolume reads SRC:DST[:ro|rw].
func ParseVolume(s string) (Volume, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return Volume{}, fmt.Errorf("%w: volume %q: want SRC:DST[:ro]", ErrBadSpec, s)
	}
	v := Volume{Source: parts[0], Target: parts[1]}
	if len(parts) == 3 {
		switch parts[2] {
		case "ro":
			v.ReadOnly = true
		case "rw":
		default:
			return Volume{}, fmt.Errorf("%w: volume %q: mode %q is not ro or rw", ErrBadSpec, s, parts[2])
		}
	}
	return v, v.validate()
}

// reservedTargets are made by the runtime; a volume there would hide them.
var reservedTargets = []string{"/", "/proc", "/sys", "/dev", "/opt/cflow/bin"}

func (v Volume) validate() error {
	if !filepath.IsAbs(v.Source) || !filepath.IsAbs(v.Target) {
		return fmt.Errorf("%w: volume %s:%s needs absolute paths", ErrBadSpec, v.Source, v.Target)
	}
	t := filepath.Clean(v.Target)
	for _, r := range reservedTargets {
		if t == r || (r != "/" && strings.HasPrefix(t, r+"/")) {
			return fmt.Errorf("%w: volume target %s is reserved", ErrBadSpec, v.Target)
		}
	}
	return nil
}

// CheckHostPaths reports a volume whose source is missing on this host.
// It is the check a migration's destination makes before the freeze.
func (s Spec) CheckHostPaths() error {
	for _, v := range s.Volumes {
		if _, err := os.Stat(v.Source); err != nil {
			return fmt.Errorf("%w: volume source %s: %v (a container with volumes needs the same paths on every host it runs on)", ErrBadSpec, v.Source, err)
		}
	}
	return nil
}

// Resources are the container's cgroup limits; zero means none.
type Resources struct {
	MemoryBytes int64   `json:"memory_bytes,omitempty"`
	CPUs        float64 `json:"cpus,omitempty"`
}

// cpuPeriod is the CFS period the CPU quota is expressed in (runc's and
// docker's default).
const cpuPeriod = 100000

func (r Resources) validate() error {
	if r.MemoryBytes < 0 || (r.MemoryBytes > 0 && r.MemoryBytes < 6<<20) {
		return fmt.Errorf("%w: memory limit %d bytes: at least 6 MiB", ErrBadSpec, r.MemoryBytes)
	}
	if r.CPUs < 0 || (r.CPUs > 0 && r.CPUs < 0.01) {
		return fmt.Errorf("%w: cpus %g: at least 0.01", ErrBadSpec, r.CPUs)
	}
	return nil
}

func (r Resources) cpuQuota() int64 { return int64(r.CPUs * cpuPeriod) }

// ParseBytes reads a size such as 512m, 2g, 1048576 or 64MiB.
func ParseBytes(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"kb", 1 << 10}, {"mb", 1 << 20}, {"gb", 1 << 30},
		{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"b", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSuffix(t, u.suffix), u.m
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("size %q: want a number with an optional unit (k, m, g)", s)
	}
	return int64(v * float64(mult)), nil
}
