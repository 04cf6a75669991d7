package cli

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerflow/containerflow/internal/nsrun"
	"github.com/containerflow/containerflow/internal/testbed"
)

// `testbed up --hosts N` with N out of range says so and creates nothing;
// 0 is refused too, although the Go API reads it as the default.
func TestTestbedUpBadHosts(t *testing.T) {
	const prefix = "cfhosts"
	// Only matters if the check is broken and a testbed got built.
	t.Cleanup(func() { _ = testbed.Down(prefix) })
	for _, n := range []string{"0", "1", "-2", "17", "x"} {
		root := NewRoot()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs([]string{"testbed", "up", "--prefix", prefix, "--no-agents", "--hosts", n})
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), "--hosts") {
			t.Errorf("--hosts %s: want an error naming --hosts, got %v (%s)", n, err, out.String())
		}
		if n != "x" && !errors.Is(err, testbed.ErrBadHosts) {
			t.Errorf("--hosts %s: want ErrBadHosts, got %v", n, err)
		}
	}
	if left, _ := nsrun.List(prefix + "-"); len(left) > 0 {
		t.Errorf("namespaces created: %v", left)
	}
	if _, err := os.Stat(filepath.Join(testbed.RunDir, prefix)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory created (%v)", err)
	}
}
