package imagetest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// StaticCflow builds the project's cflow binary without cgo, so that it
// runs in an image that has no libc (BuildBusybox's), and returns its path.
func StaticCflow(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "cflow")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/cflow")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(out)))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build a static cflow: %v\n%s", err, out)
	}
	return bin
}
