// Package tbtest builds testbeds for tests in other packages: a random
// prefix per test, a skip with the reason when not root, and a teardown
// that fails the test if anything with the prefix survives.
package tbtest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/containerflow/containerflow/internal/nsrun"
	"github.com/containerflow/containerflow/internal/testbed"
)

// RequireRoot skips a test that needs root, saying why.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root for %s (CI runs as root)", why)
	}
}

// Prefix returns a fresh testbed prefix starting with letter.
func Prefix(letter string) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return letter + hex.EncodeToString(b)
}

// Up builds a testbed (cfg.Prefix is chosen here) and registers its
// teardown. Register other cleanups after calling Up: they run first.
func Up(t testing.TB, letter string, cfg testbed.Config) *testbed.Testbed {
	t.Helper()
	RequireRoot(t, "network namespaces")
	cfg.Prefix = Prefix(letter)
	tb, err := testbed.Up(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := testbed.Down(cfg.Prefix); err != nil {
			t.Errorf("testbed down: %v", err)
		}
		if left, _ := nsrun.List(cfg.Prefix + "-"); len(left) > 0 {
			t.Errorf("namespaces left behind: %v", left)
		}
	})
	return tb
}
