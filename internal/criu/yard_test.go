package criu

import (
	"fmt"
	"math/rand/v2"
	"os"
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
