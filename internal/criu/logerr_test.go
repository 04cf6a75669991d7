package criu

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The first error that explains a failure is not CRIU's first error line
// on hosts without CAP_SYS_RESOURCE (a log as CRIU 4.2 writes it there).
func TestFailedNamesTheRealError(t *testing.T) {
	log := filepath.Join(t.TempDir(), "dump.log")
	text := `(00.000420) Version: 4.2 (gitid 0)
(00.001131) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted
(00.010876) Error (criu/cr-dump.c:389): Can't get rlimit 0: Operation not permitted
(00.010878) Error (criu/cr-dump.c:1584): Dump core (pid: 7166) failed with -1
`
	if err := os.WriteFile(log, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := FirstError(log); got != "Can't get rlimit 0: Operation not permitted" {
		t.Fatalf("FirstError: %q", got)
	}
	cause := errors.Join(ErrFailed, errors.New("dump\nlog file: "+log))
	err := Failed("checkpoint web", cause, log)
	want := "checkpoint web: criu failed dump: Can't get rlimit 0: Operation not permitted (see " + log + ")"
	if err.Error() != want || !errors.Is(err, ErrFailed) {
		t.Fatalf("got %q, want %q", err, want)
	}
	if strings.Count(err.Error(), log) != 1 || strings.Contains(err.Error(), "\n") {
		t.Errorf("the log must be named once, on one line: %q", err)
	}
	if got := FirstError(filepath.Join(t.TempDir(), "missing.log")); got != "" {
		t.Errorf("missing log: %q", got)
	}
}
