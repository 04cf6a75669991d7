package criu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// PrivatePath is where scripts/install-criu.sh puts its wrapper.
const PrivatePath = "/opt/containerflow/criu/bin/criu"

// EnvPath overrides the CRIU binary.
const EnvPath = "CFLOW_CRIU"

// MinVersion is the oldest CRIU known to dump and restore TCP on the
// kernels this project targets.
var MinVersion = Version{4, 2, 0}

// ErrNotFound means no usable CRIU exists.
var ErrNotFound = errors.New("no CRIU >= 4.2 found (run scripts/bootstrap.sh, or set CFLOW_CRIU)")

// Version is a CRIU release number.
type Version struct{ Major, Minor, Patch int }

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// Less reports whether v is older than w.
func (v Version) Less(w Version) bool {
	if v.Major != w.Major {
		return v.Major < w.Major
	}
	if v.Minor != w.Minor {
		return v.Minor < w.Minor
	}
	return v.Patch < w.Patch
}

var versionRE = regexp.MustCompile(`(?m)^Version:\s*(\d+)\.(\d+)(?:\.(\d+))?`)

// ParseVersion reads the output of `criu --version`.
func ParseVersion(out string) (Version, error) {
	m := versionRE.FindStringSubmatch(out)
	if m == nil {
		return Version{}, fmt.Errorf("no version in %q", strings.TrimSpace(out))
	}
	var v Version
	v.Major, _ = strconv.Atoi(m[1])
	v.Minor, _ = strconv.Atoi(m[2])
	if m[3] != "" {
		v.Patch, _ = strconv.Atoi(m[3])
	}
	return v, nil
}

// Binary is a located CRIU.
type Binary struct {
	Path    string
	Version Version
	// Preload is a library CRIU is run with (LD_PRELOAD): the prlimit
	// shim on hosts whose root lacks CAP_SYS_RESOURCE; see PrlimitShim.
	Preload string
}

// PrlimitShim is built by scripts/bootstrap.sh from
// scripts/criu-prlimit.c on hosts whose root lacks CAP_SYS_RESOURCE.
// There the kernel refuses CRIU a read of the resource limits of a process
// of another user, so every server that drops privileges fails to dump;
// the shim answers that one read from /proc/PID/limits.
const PrlimitShim = "/opt/containerflow/lib/criu-prlimit.so"

// HasSysResource reports whether this process holds CAP_SYS_RESOURCE.
func HasSysResource() (bool, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false, fmt.Errorf("capget: %w", err)
	}
	return data[unix.CAP_SYS_RESOURCE/32].Effective&(1<<(unix.CAP_SYS_RESOURCE%32)) != 0, nil
}

// withShim sets Preload where the host needs the prlimit shim and has it.
func (b Binary) withShim() Binary {
	if ok, err := HasSysResource(); err == nil && !ok {
		if _, err := os.Stat(PrlimitShim); err == nil {
			b.Preload = PrlimitShim
		}
	}
	return b
}

// Command returns a command running this CRIU with args.
func (b Binary) Command(args ...string) *exec.Cmd {
	cmd := exec.Command(b.Path, args...)
	if b.Preload != "" {
		cmd.Env = append(os.Environ(), "LD_PRELOAD="+b.Preload)
	}
	return cmd
}

// Candidate is one place Find looked at, with what it found there.
type Candidate struct {
	Path    string
	Version Version
	Err     error
}

// Find returns the first usable CRIU and every candidate it looked at, so a
// failure can say why each was rejected.
func Find(ctx context.Context) (Binary, []Candidate, error) {
	var paths []string
	if p := os.Getenv(EnvPath); p != "" {
		paths = append(paths, p)
	}
	paths = append(paths, PrivatePath)
	if p, err := exec.LookPath("criu"); err == nil {
		paths = append(paths, p)
	}
	var cands []Candidate
	for _, p := range paths {
		c := Candidate{Path: p}
		if _, err := os.Stat(p); err != nil {
			c.Err = err
			cands = append(cands, c)
			continue
		}
		c.Version, c.Err = versionOf(ctx, p)
		if c.Err == nil && c.Version.Less(MinVersion) {
			c.Err = fmt.Errorf("version %s is older than %s", c.Version, MinVersion)
		}
		cands = append(cands, c)
		if c.Err == nil {
			return Binary{Path: p, Version: c.Version}.withShim(), cands, nil
		}
	}
	return Binary{}, cands, ErrNotFound
}

// At inspects the CRIU binary at path.
func At(ctx context.Context, path string) (Binary, error) {
	v, err := versionOf(ctx, path)
	if err != nil {
		return Binary{}, err
	}
	return Binary{Path: path, Version: v}.withShim(), nil
}

func versionOf(ctx context.Context, path string) (Version, error) {
	out, err := exec.CommandContext(ctx, path, "--version").CombinedOutput()
	if err != nil {
		return Version{}, fmt.Errorf("%s --version: %w: %s", path, err, bytes.TrimSpace(out))
	}
	return ParseVersion(string(out))
}

// Check runs `criu check` and returns its verdict. CRIU prints "Looks good."
// when every feature it needs is there.
func (b Binary) Check(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, b.Path, "check").CombinedOutput()
	s := string(out)
	if err != nil || !strings.Contains(s, "Looks good") {
		return s, fmt.Errorf("%s check failed: %v: %s", b.Path, err, lastLines(s, 5))
	}
	return "Looks good", nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
