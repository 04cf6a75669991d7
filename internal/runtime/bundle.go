package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Spec describes a container to run.
type Spec struct {
	Name  string   `json:"name"`
	Args  []string `json:"args"`
	Env   []string `json:"env,omitempty"`
	Cwd   string   `json:"cwd,omitempty"`
	Netns string   `json:"netns"` // path of the network namespace to join
	// Binds are extra read-only bind mounts, host path -> container path
	// (the project's own binaries, for instance).
	Binds []Bind `json:"binds,omitempty"`
	// RootfsLower is the unpacked image the container's root is an overlay
	// of (see imageroot.go); empty: the host's /usr, /etc, ... read-only.
	RootfsLower string    `json:"rootfs_lower,omitempty"`
	User        User      `json:"user"`
	Rlimits     []Rlimit  `json:"rlimits,omitempty"` // on top of the defaults; see rlimits
	Volumes     []Volume  `json:"volumes,omitempty"`
	Resources   Resources `json:"resources"`
	// ActionScript, when set, is run by CRIU at every step of a restore of
	// this bundle (CRIU's action-script option); see CRIUConfig.
	ActionScript string `json:"action_script,omitempty"`
	// Log bounds the container's log on each host (zero: the defaults).
	Log LogConfig `json:"log,omitempty"`
}

// criuConfName is the bundle's CRIU configuration, named in config.json by
// runc's org.criu.config annotation, so checkpoints and restores do not
// depend on the machine-wide /etc/criu/runc.conf.
const criuConfName = "criu.conf"

// CRIUConfig is what runc's CRIU reads for this container: nftables for
// the network lock (iptables is not installed here, and nftables locks are
// faster), and the action script if any.
func (s Spec) CRIUConfig() string {
	c := "network-lock nftables\n"
	if s.ActionScript != "" {
		c += "action-script " + s.ActionScript + "\n"
	}
	return c
}

// Bind is a read-only bind mount.
type Bind struct {
	Source string `json:"source"`
	Target string `json:"target"`
}

// ErrBadSpec is wrapped by every validation error.
var ErrBadSpec = errors.New("invalid container spec")

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.]{0,31}$`)

// Validate checks a spec before anything is created for it.
func (s Spec) Validate() error {
	if !nameRE.MatchString(s.Name) {
		return fmt.Errorf("%w: name %q (1-32 of A-Z a-z 0-9 _ .)", ErrBadSpec, s.Name)
	}
	if len(s.Args) == 0 || s.Args[0] == "" {
		return fmt.Errorf("%w: empty command", ErrBadSpec)
	}
	if s.Netns == "" {
		return fmt.Errorf("%w: no network namespace", ErrBadSpec)
	}
	for _, e := range s.Env {
		if k, _, ok := cutEnv(e); !ok || k == "" {
			return fmt.Errorf("%w: env %q is not KEY=VALUE", ErrBadSpec, e)
		}
	}
	for _, b := range s.Binds {
		if !filepath.IsAbs(b.Source) || !filepath.IsAbs(b.Target) {
			return fmt.Errorf("%w: bind %s:%s needs absolute paths", ErrBadSpec, b.Source, b.Target)
		}
	}
	for _, v := range s.Volumes {
		if err := v.validate(); err != nil {
			return err
		}
	}
	if err := s.Resources.validate(); err != nil {
		return err
	}
	if _, err := s.rlimits(); err != nil {
		return err
	}
	if s.RootfsLower != "" {
		if fi, err := os.Stat(s.RootfsLower); err != nil || !fi.IsDir() || !filepath.IsAbs(s.RootfsLower) {
			return fmt.Errorf("%w: image root %q is not a directory on this host", ErrBadSpec, s.RootfsLower)
		}
	}
	if s.Cwd != "" && !filepath.IsAbs(s.Cwd) {
		return fmt.Errorf("%w: working directory %q needs an absolute path", ErrBadSpec, s.Cwd)
	}
	if s.ActionScript != "" && !filepath.IsAbs(s.ActionScript) {
		return fmt.Errorf("%w: action script %q needs an absolute path", ErrBadSpec, s.ActionScript)
	}
	if err := s.Log.Validate(); err != nil {
		return err
	}
	return nil
}

// mergeEnv returns base with over applied, the last value of a name
// winning, in first-seen order: a process would see the first of two
// duplicates (glibc's getenv), not the one the user gave last.
func mergeEnv(base, over []string) []string {
	var out []string
	at := map[string]int{}
	for _, e := range append(append([]string(nil), base...), over...) {
		k, _, _ := cutEnv(e)
		if i, ok := at[k]; ok {
			out[i] = e
			continue
		}
		at[k] = len(out)
		out = append(out, e)
	}
	return out
}

func cutEnv(e string) (string, string, bool) {
	for i := 0; i < len(e); i++ {
		if e[i] == '=' {
			return e[:i], e[i+1:], true
		}
	}
	return "", "", false
}

// RWDirs are the container's writable directories: bind mounts of
// directories inside the bundle (bundle/rw/NAME), not tmpfs. CRIU treats
// bind mounts as external and does not archive them, while it runs tar
// once per tmpfs on dump and again on restore (about 12 ms each here); the
// migration streams these directories next to the images instead.
var RWDirs = []struct{ Target, Name, Mode string }{
	{"/tmp", "tmp", "1777"},
	{"/run", "run", "0755"},
	{"/var/tmp", "var-tmp", "1777"},
	{"/dev/shm", "dev-shm", "1777"},
}

// RWDir is where a bundle keeps the writable directories.
func RWDir(bundle string) string { return filepath.Join(bundle, "rw") }

// hostTopDirs are shown to containers from the host. On merged-/usr
// systems most are symlinks into /usr and are reproduced as symlinks.
var hostTopDirs = []string{"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc"}

// writeBundle creates dir/config.json and dir/rootfs for spec. cgroupsPath
// must be unique on the machine (two agents on one machine, same names).
func writeBundle(dir string, s Spec, cgroupsPath string) error {
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return err
	}
	var binds []specs.Mount
	topDirs := hostTopDirs
	if s.RootfsLower != "" {
		topDirs = nil // the image has its own
	}
	for _, d := range topDirs {
		host := "/" + d
		fi, err := os.Lstat(host)
		if err != nil {
			continue
		}
		p := filepath.Join(rootfs, d)
		if fi.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink(host)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, p); err != nil && !os.IsExist(err) {
				return err
			}
			continue
		}
		binds = append(binds, roBind(host, "/"+d))
	}
	for _, b := range s.Binds {
		binds = append(binds, roBind(b.Source, b.Target))
	}
	for _, v := range s.Volumes {
		mode := "rw"
		if v.ReadOnly {
			mode = "ro"
		}
		binds = append(binds, specs.Mount{Destination: v.Target, Type: "bind", Source: v.Source, Options: []string{"rbind", mode}})
	}
	for _, d := range RWDirs {
		if s.RootfsLower != "" && d.Target != "/dev/shm" {
			continue // in the image's writable layer, as docker has them
		}
		p := filepath.Join(RWDir(dir), d.Name)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
		mode, _ := strconv.ParseUint(d.Mode, 8, 32)
		if err := os.Chmod(p, os.FileMode(mode)|modeBits(mode)); err != nil {
			return err
		}
		binds = append(binds, specs.Mount{Destination: d.Target, Type: "bind", Source: p, Options: []string{"rbind", "rw", "nosuid", "nodev"}})
	}
	devDir, err := writeDev(dir)
	if err != nil {
		return fmt.Errorf("/dev of %s: %w", s.Name, err)
	}
	// Directories are masked with a read-only bind of an empty directory
	// (runc would mount a tmpfs, which CRIU then archives).
	empty := filepath.Join(dir, "empty")
	if err := os.MkdirAll(empty, 0o555); err != nil {
		return err
	}
	for _, m := range maskedDirs {
		if _, err := os.Stat(m); err == nil {
			binds = append(binds, roBind(empty, m))
		}
	}
	if err := os.WriteFile(filepath.Join(dir, criuConfName), []byte(s.CRIUConfig()), 0o644); err != nil {
		return err
	}
	rl, err := s.rlimits()
	if err != nil {
		return err
	}
	cfg := ociConfig(s, cgroupsPath, devDir, binds, rl)
	cfg.Annotations = map[string]string{"org.criu.config": filepath.Join(dir, criuConfName)}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644)
}

func roBind(src, dst string) specs.Mount {
	return specs.Mount{Destination: dst, Type: "bind", Source: src, Options: []string{"rbind", "ro", "nosuid", "nodev"}}
}

// The container's /dev. runc mounts a tmpfs there and fills it with device
// nodes; CRIU then archives that tmpfs with tar at every dump and unpacks
// it at every restore (about 20 ms each here). A bind mount of a directory
// holding the same nodes is an external mount to CRIU, re-bound in no time;
// runc sees the bind and leaves /dev alone, so the nodes and links are made
// here, as runc would make them. The devices cgroup still decides what may
// be opened.
var devNodes = []struct {
	name         string
	major, minor uint32
}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}}

var devLinks = [][2]string{{"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"},
	{"stderr", "/proc/self/fd/2"}, {"ptmx", "pts/ptmx"}}

func writeDev(bundle string) (string, error) {
	dev := filepath.Join(bundle, "dev")
	for _, d := range []string{"pts", "mqueue", "shm"} {
		if err := os.MkdirAll(filepath.Join(dev, d), 0o755); err != nil {
			return "", err
		}
	}
	for _, n := range devNodes {
		p := filepath.Join(dev, n.name)
		_ = os.Remove(p)
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(n.major, n.minor))); err != nil {
			return "", fmt.Errorf("mknod %s: %w", p, err)
		}
		if err := os.Chmod(p, 0o666); err != nil { // past the umask
			return "", err
		}
	}
	for _, l := range devLinks {
		p := filepath.Join(dev, l[0])
		_ = os.Remove(p)
		if err := os.Symlink(l[1], p); err != nil {
			return "", err
		}
	}
	return dev, nil
}

// modeBits turns the sticky/setgid bits of an octal mode into Go's.
func modeBits(m uint64) os.FileMode {
	var b os.FileMode
	if m&0o1000 != 0 {
		b |= os.ModeSticky
	}
	return b
}

// maskedDirs are hidden behind an empty read-only directory. Directories
// under /proc cannot be bind-mounted over (runc refuses), so those are made
// read-only instead (ReadonlyPaths below).
var maskedDirs = []string{"/sys/firmware"}

// ociConfig follows `runc spec` defaults where it can; what differs says why.
func ociConfig(s Spec, cgroupsPath, devDir string, binds []specs.Mount, rlimits []Rlimit) *specs.Spec {
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_NET_RAW",
		"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_KILL", "CAP_AUDIT_WRITE", "CAP_SYS_CHROOT"}
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/cflow/bin",
		"HOME=/tmp",
		// CRIU cannot dump MPTCP sockets, which Go >= 1.24 listeners use
		// by default; harmless for anything that is not Go.
		"GODEBUG=multipathtcp=0",
	}
	cwd := s.Cwd
	if cwd == "" {
		cwd = "/"
	}
	mounts := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		// A bind of a directory of the bundle, not runc's tmpfs: see writeDev.
		{Destination: "/dev", Type: "bind", Source: devDir, Options: []string{"rbind", "rw", "nosuid", "noexec"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
	}
	mounts = append(mounts, binds...)
	var rl []specs.POSIXRlimit
	for _, l := range rlimits {
		rl = append(rl, specs.POSIXRlimit{Type: l.Type, Soft: l.Soft, Hard: l.Hard})
	}
	pcaps := &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
	if s.User.UID != 0 {
		// As docker does: a non-root user gets no capabilities, only the
		// bounding set (what a setuid program could regain).
		pcaps = &specs.LinuxCapabilities{Bounding: caps}
	}
	res := &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}}
	if m := s.Resources.MemoryBytes; m > 0 {
		res.Memory = &specs.LinuxMemory{Limit: &m}
	}
	if q := s.Resources.cpuQuota(); q > 0 {
		p := uint64(cpuPeriod)
		res.CPU = &specs.LinuxCPU{Quota: &q, Period: &p}
	}
	return &specs.Spec{
		Version:  specs.Version,
		Hostname: s.Name,
		Process: &specs.Process{
			User:            specs.User{UID: s.User.UID, GID: s.User.GID},
			Args:            s.Args,
			Env:             mergeEnv(env, s.Env),
			Cwd:             cwd,
			Capabilities:    pcaps,
			Rlimits:         rl,
			NoNewPrivileges: true,
		},
		// CRIU needs to create a temporary directory in the root.
		Root:   &specs.Root{Path: "rootfs", Readonly: false},
		Mounts: mounts,
		Linux: &specs.Linux{
			CgroupsPath: cgroupsPath,
			Resources:   res,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.MountNamespace},
				{Type: specs.NetworkNamespace, Path: s.Netns},
			},
			// Files are masked by runc with /dev/null binds (cheap for CRIU).
			MaskedPaths: []string{"/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug"},
			ReadonlyPaths: []string{"/proc/acpi", "/proc/asound", "/proc/scsi", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}
