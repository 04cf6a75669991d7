package runtime

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/testprog"
)

func readLog(t *testing.T, r *Runtime, name string) string {
	t.Helper()
	l, err := r.OpenLog(name)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, _, err := l.CopyTo(&b, 0); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// checkCounted says whether s is whole lines "line N", N counting up by
// one from some first to last.
func checkCounted(s string) (first, last int, err error) {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	for i, l := range lines {
		n, err := strconv.Atoi(strings.TrimPrefix(l, "line "))
		if err != nil || !strings.HasPrefix(l, "line ") {
			return first, last, fmt.Errorf("line %d is %q", i, l)
		}
		if i == 0 {
			first = n
		} else if n != last+1 {
			return first, last, fmt.Errorf("line %d is %d after %d", i, n, last)
		}
		last = n
	}
	return first, last, nil
}

// A container writing ~80 times its log's cap: the files on disk stay
// within the cap, the newest lines are there, in order and whole, and the
// container is not slowed down to a crawl by the rotation.
func TestLogRotationBoundsANoisyContainer(t *testing.T) {
	tb, cb := setup(t)
	ctx := context.Background()
	r := newRuntime(t, tb, testbed.HostA, cb)
	na, err := tb.AddContainerNet(testbed.HostA, "noisy", netip.MustParseAddr("198.18.0.9"), nil)
	if err != nil {
		t.Fatal(err)
	}
	const lines = 400000 // "line 123456\n": ~5 MB
	cfg := LogConfig{MaxBytes: 20 << 10, MaxFiles: 3}
	prog := fmt.Sprintf("import sys\nw = sys.stdout.write\nfor i in range(1, %d):\n    w('line %%d\\n' %% i)\n", lines+1)
	t.Cleanup(func() { _ = r.Delete(ctx, "noisy") })
	t0 := time.Now()
	if _, err := r.Run(ctx, Spec{Name: "noisy", Args: []string{testprog.Python, "-c", prog}, Netns: na.NetnsPath(), Log: cfg}); err != nil {
		t.Fatal(err)
	}
	l, err := r.OpenLog("noisy")
	if err != nil {
		t.Fatal(err)
	}
	var s LogState
	for {
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		s, err = l.Wait(wctx, 0)
		cancel()
		if err != nil {
			t.Fatalf("log still live after 60 s: %+v", s)
		}
		if !s.Live {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(t0)
	var onDisk int64
	files, _ := filepath.Glob(filepath.Join(r.logDir("noisy"), "*"))
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		onDisk += fi.Size()
	}
	t.Logf("%d bytes written in %v, %d bytes on disk in %d files, log [%d, %d)", s.End, took, onDisk, len(files), s.Start, s.End)
	if max := cfg.MaxBytes * int64(cfg.MaxFiles); onDisk > max || len(files) > cfg.MaxFiles {
		t.Errorf("%d bytes in %d files on disk, cap %d in %d", onDisk, len(files), max, cfg.MaxFiles)
	}
	if s.End < 40*cfg.MaxBytes*int64(cfg.MaxFiles) {
		t.Errorf("only %d bytes written", s.End)
	}
	first, last, err := checkCounted(readLog(t, r, "noisy"))
	if err != nil || last != lines {
		t.Errorf("kept lines %d..%d (%v), want up to %d", first, last, err, lines)
	}
	if s.End-s.Start < cfg.MaxBytes*int64(cfg.MaxFiles-1)-int64(cfg.MaxFiles)*16 { // files end at a line end
		t.Errorf("kept %d bytes only", s.End-s.Start)
	}
	off, _, err := l.TailOffset(3)
	if err != nil {
		t.Fatal(err)
	}
	var tail bytes.Buffer
	if _, _, err := l.CopyTo(&tail, off); err != nil || tail.String() != fmt.Sprintf("line %d\nline %d\nline %d\n", lines-2, lines-1, lines) {
		t.Errorf("tail 3: %q %v", tail.String(), err)
	}
}

// A held log (an incoming container) gets its history from elsewhere
// while its own output waits; once released, offsets run on from the
// history's, across files.
func TestLogHoldAppendRelease(t *testing.T) {
	r := &Runtime{dir: t.TempDir(), logs: map[string]*logSink{}, stores: map[string]*logStore{}}
	cfg := LogConfig{MaxBytes: 16, MaxFiles: 100}
	if err := r.HoldLog("c", cfg); err != nil {
		t.Fatal(err)
	}
	st, _ := r.store("c")
	st.attach()
	_ = st.write([]byte("mine 1\nmine 2\nmine 3\n"))
	if err := r.AppendLog("c", 1000, []byte("old 1\nold 2\nold 3\n")); err != nil {
		t.Fatal(err)
	}
	if err := r.AppendLog("c", 1000, []byte("again\n")); err == nil {
		t.Error("overlapping history accepted")
	}
	if err := r.AppendLog("c", 1018, []byte("old 4\n")); err != nil {
		t.Fatal(err)
	}
	l, _ := r.OpenLog("c")
	if s, _ := l.State(); !s.Held || !s.Live || s.Start != 1000 || s.End != 1024 {
		t.Errorf("held: %+v", s)
	}
	r.ReleaseLog("c")
	_ = st.write([]byte("mine 4\n"))
	var b bytes.Buffer
	start, end, err := l.CopyTo(&b, 0)
	want := "old 1\nold 2\nold 3\nold 4\nmine 1\nmine 2\nmine 3\nmine 4\n"
	if err != nil || b.String() != want || start != 1000 || end != 1000+int64(len(want)) {
		t.Errorf("released: [%d, %d) %q %v", start, end, b.String(), err)
	}
	b.Reset()
	if _, _, err := l.CopyTo(&b, 1024+7); err != nil || b.String() != "mine 2\nmine 3\nmine 4\n" {
		t.Errorf("from an offset: %q %v", b.String(), err)
	}
	// A reloaded store (a restarted agent) sees the same log.
	st.close()
	r2 := &Runtime{dir: r.dir, logs: map[string]*logSink{}, stores: map[string]*logStore{}}
	if got := readLog(t, r2, "c"); got != want {
		t.Errorf("reloaded: %q", got)
	}
	r2.DropLog("c")
	if _, err := os.Stat(r.logDir("c")); !os.IsNotExist(err) {
		t.Errorf("dropped log still there: %v", err)
	}
}
