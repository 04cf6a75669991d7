package criu

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// harmless are error lines CRIU logs on hosts like this one without
// failing: root without CAP_SYS_RESOURCE cannot raise CRIU's own
// open-files limit, which CRIU reports as an error and then works around.
// Naming one as the cause would hide the real one.
var harmless = []string{"Can't setup RLIMIT_NOFILE for self"}

func isHarmless(line string) bool {
	for _, h := range harmless {
		if strings.Contains(line, h) {
			return true
		}
	}
	return false
}

// errorLine matches CRIU's "(00.010876) Error (criu/cr-dump.c:389): msg".
var errorLine = regexp.MustCompile(`Error \([^)]*\):\s*(.*)$`)

// FirstError returns the first error line of a CRIU log that is not one of
// the harmless ones, without its timestamp and source location; "" if
// there is none or the log cannot be read.
func FirstError(logPath string) string {
	f, err := os.Open(logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if m := errorLine.FindStringSubmatch(sc.Text()); m != nil && !isHarmless(m[1]) {
			return strings.TrimSpace(m[1])
		}
	}
	return ""
}

// Failed describes a failed CRIU run of `what` whose log is logPath, on one
// line: the failure, CRIU's first real error, and the log, named once.
// It wraps err.
func Failed(what string, err error, logPath string) error {
	msg := oneLine(err.Error())
	// go-runc appends runc's own "log file: PATH" and CRIU's reply type.
	if i := strings.Index(msg, " log file: "); i >= 0 {
		msg = msg[:i]
	}
	if first := FirstError(logPath); first != "" && !strings.Contains(msg, first) {
		msg += ": " + first
	}
	return &failedError{msg: fmt.Sprintf("%s: %s (see %s)", what, msg, logPath), err: err}
}

type failedError struct {
	msg string
	err error
}

func (e *failedError) Error() string { return e.msg }
func (e *failedError) Unwrap() error { return e.err }

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
