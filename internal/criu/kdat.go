package criu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// CRIU probes the kernel at every start (about 20 ms here) unless it finds
// its cache, /run/criu.kdat. It reads that file wherever /run lives, but
// only writes it when /run is a tmpfs, so that a reboot (perhaps into
// another kernel) clears it. On machines whose /run is not a tmpfs (this
// one) every checkpoint and every restore paid the probe twice — runc starts
// CRIU once to ask its version and once to work — about 55 ms of downtime
// per migration.
//
// EnsureKernelCache makes the cache exist anyway: it runs `criu check` in a
// private mount namespace whose /run is a tmpfs, copies the file CRIU wrote
// there to the real /run, and records the boot id and the CRIU build next to
// it, so a reboot or another CRIU regenerates it, as the tmpfs would have.
const kdatFile = "/run/criu.kdat"

// kdatStamp is a variable for the test, whose stamp must be its own:
// agents in other test packages stamp the real one meanwhile.
var kdatStamp = "/run/containerflow/criu.kdat.stamp"

// EnsureKernelCache returns what it did ("tmpfs", "fresh", "regenerated").
func EnsureKernelCache(ctx context.Context, b Binary) (string, error) {
	var st unix.Statfs_t
	if err := unix.Statfs("/run", &st); err == nil && st.Type == unix.TMPFS_MAGIC {
		return "tmpfs", nil // CRIU keeps its own cache
	}
	want, err := kdatIdentity(b)
	if err != nil {
		return "", err
	}
	if got, err := os.ReadFile(kdatStamp); err == nil && string(got) == want {
		if _, err := os.Stat(kdatFile); err == nil {
			return "fresh", nil
		}
	}
	tmp, err := os.MkdirTemp("", "cflow-kdat-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "criu.kdat")
	// Go makes the new mount namespace's mounts private before exec, so
	// the tmpfs never shows outside the child.
	script := `mount -t tmpfs cflow-kdat /run && "$1" check >/dev/null 2>&1; cp /run/criu.kdat "$2"`
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", script, "sh", b.Path, out)
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("generate CRIU kernel cache: %v: %s", err, strings.TrimSpace(string(msg)))
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(kdatStamp), 0o755); err != nil {
		return "", err
	}
	// Rename within /run so a concurrent CRIU never reads half a file,
	// from a name of its own: two agents starting together both
	// regenerate (one renamed the other's file away: a CI failure).
	part, err := os.CreateTemp(filepath.Dir(kdatFile), "criu.kdat.cflow-")
	if err != nil {
		return "", err
	}
	_, werr := part.Write(data)
	if cerr := part.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(part.Name(), kdatFile)
	}
	if werr != nil {
		_ = os.Remove(part.Name())
		return "", werr
	}
	// A zero-length criu.kdat.tmp left by an interrupted CRIU blocks CRIU's
	// own saving forever (it opens it O_EXCL); it has no other use.
	if fi, err := os.Stat(kdatFile + ".tmp"); err == nil && fi.Size() == 0 {
		_ = os.Remove(kdatFile + ".tmp")
	}
	return "regenerated", os.WriteFile(kdatStamp, []byte(want), 0o644)
}

// kdatIdentity names what the cache is valid for: this boot, this CRIU.
func kdatIdentity(b Binary) (string, error) {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(b.Path)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("boot=%s criu=%s version=%s mtime=%d\n", strings.TrimSpace(string(boot)), b.Path, b.Version, fi.ModTime().UnixNano()), nil
}
