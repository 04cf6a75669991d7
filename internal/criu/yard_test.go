package criu

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The directory a restore's log names is removed, and only it: another
// CRIU's directory in /tmp stays.
func TestRemoveMountYard(t *testing.T) {
	// Named as mkdtemp names them: six letters or digits.
	mk := func() string {
		for {
			d := fmt.Sprintf("/tmp/.criu.mntns.T%05d", rand.IntN(100000))
			if err := os.Mkdir(d, 0o777); err == nil {
				return d
			} else if !os.IsExist(err) {
				t.Fatal(err)
			}
		}
	}
	mine, other := mk(), mk()
	t.Cleanup(func() { os.Remove(mine); os.Remove(other) })
	log := filepath.Join(t.TempDir(), "restore.log")
	lines := "(00.002040) mnt: Building mntns root\n" +
		"(00.002051) mnt: \t\tWill mount 152 @ " + mine + "/mnt-0000000152 /run\n" +
		"(00.002055) mnt: \t\tWill mount 149 @ " + mine + "/mnt-0000000149 /tmp\n"
	if err := os.WriteFile(log, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	dir, err := RemoveMountYard(log)
	if err != nil || dir != mine {
		t.Fatalf("RemoveMountYard = %q, %v; want %q", dir, err, mine)
	}
	if _, err := os.Stat(mine); !os.IsNotExist(err) {
		t.Errorf("%s still there: %v", mine, err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another CRIU's directory %s was touched: %v", other, err)
	}
	// Again: CRIU (or the first call) removed it already; a log without a
	// name, or no log, is nothing to do.
	if dir, err := RemoveMountYard(log); dir != "" || err != nil {
		t.Errorf("second call = %q, %v", dir, err)
	}
	if dir, err := RemoveMountYard(filepath.Join(t.TempDir(), "none.log")); dir != "" || err != nil {
		t.Errorf("missing log = %q, %v", dir, err)
	}
}

// The watch names the directory a process made though no log does, and
// leaves one another process made.
func TestWatchYards(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("fanotify needs CAP_SYS_ADMIN (CI runs as root)")
	}
	name := func() string { return fmt.Sprintf("/tmp/.criu.mntns.W%05d", rand.IntN(100000)) }
	theirs, ours := name(), name()
	cmd := exec.Command("/usr/bin/python3", "-c", "import os, sys, time; time.sleep(0.2); os.mkdir(sys.argv[1])", theirs)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	y, err := WatchYards(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(ours, 0o777); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(ours); os.Remove(theirs) })
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	removed, err := y.Remove()
	if err != nil || len(removed) != 1 || removed[0] != theirs {
		t.Fatalf("Remove = %v, %v; want [%s]", removed, err, theirs)
	}
	if _, err := os.Stat(theirs); !os.IsNotExist(err) {
		t.Errorf("%s still there: %v", theirs, err)
	}
	if _, err := os.Stat(ours); err != nil {
		t.Errorf("%s, made by another process, was touched: %v", ours, err)
	}
}
