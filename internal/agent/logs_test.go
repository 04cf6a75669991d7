package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/testprog"
)

// ticker prints "line N ........" (~50 bytes) every 2 ms, N counting in
// the process's memory: a 4 KiB log file is full every ~0.2 s.
const ticker = `
import sys, time
n = 0
while True:
    n += 1
    sys.stdout.write("line %d %s\n" % (n, "." * 40))
    sys.stdout.flush()
    time.sleep(0.002)
`

// counted checks that s is lines "line N ..." with N going up by one, and
// returns the first and last N; a last line cut short is left out.
func counted(s string) (first, last int, err error) {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	} else {
		return 0, 0, fmt.Errorf("no whole line in %q", s)
	}
	for i, l := range strings.Split(s, "\n") {
		f := strings.Fields(l)
		if len(f) != 3 || f[0] != "line" {
			return first, last, fmt.Errorf("line %d is %q", i, l)
		}
		n, err := strconv.Atoi(f[1])
		if err != nil {
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

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A container printing a counter every 2 ms goes A -> B -> A: its log on A
// then holds every line from 1 on, in order, once each, across the two
// moves and the rotations of its small files; a follower started before
// the moves saw the same, reconnecting to each new host from where it
// was; tail gives the last lines.
func TestLogsFollowTheContainerThereAndBack(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	spec := ContainerSpec{Name: "tick", IP: netip.MustParseAddr("198.18.0.5"), Args: []string{testprog.Python, "-c", ticker},
		LogMaxBytes: 4 << 10, LogFiles: 100}
	e.runOn(testbed.HostA, spec)
	hosts := []*Client{e.clients[testbed.HostA], e.clients[testbed.HostB]}

	fctx, stop := context.WithCancel(ctx)
	var followed syncBuf
	followErr := make(chan error, 1)
	go func() {
		followErr <- FollowLogs(fctx, hosts, "tick", LogOptions{From: -1, Tail: -1, Follow: true}, &followed, os.Stderr)
	}()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("no %s after 10 s; followed %d bytes", what, len(followed.String()))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// A line printed after the follow started arrives.
	waitFor("line 50 followed", func() bool { return strings.Contains(followed.String(), "line 50 ") })

	for _, mv := range [][2]string{{testbed.HostA, testbed.HostB}, {testbed.HostB, testbed.HostA}} {
		res, err := e.clients[mv[0]].Migrate(ctx, "tick", MigrateRequest{To: mv[1]})
		if err != nil {
			t.Fatalf("migrate %s -> %s: %v", mv[0], mv[1], err)
		}
		t.Logf("%s -> %s: time to ready %.1f ms, total %.1f ms", mv[0], mv[1], res.Record.TimeToReadyMs, res.Record.TotalMs)
		// The previous host handed its copy over before answering.
		if e.agents[mv[0]].rt.HasLog("tick") {
			t.Errorf("%s still keeps a log of tick after it left", mv[0])
		}
		time.Sleep(300 * time.Millisecond)
	}

	b, err := e.clients[testbed.HostA].Logs(ctx, "tick")
	if err != nil {
		t.Fatal(err)
	}
	first, last, err := counted(string(b))
	t.Logf("log on hostA after A -> B -> A: lines %d..%d, %d bytes", first, last, len(b))
	if err != nil || first != 1 || last < 300 || len(b) < 4*int(spec.LogMaxBytes) {
		t.Errorf("log after A -> B -> A: lines %d..%d: %v", first, last, err)
	}

	// The follower catches up with what the log has, then is stopped.
	waitFor("followed line "+strconv.Itoa(last), func() bool { return strings.Contains(followed.String(), fmt.Sprintf("line %d ", last+1)) })
	stop()
	if err := <-followErr; err != nil {
		t.Errorf("follow: %v", err)
	}
	ff, fl, err := counted(followed.String())
	t.Logf("followed: lines %d..%d", ff, fl)
	if err != nil || ff != 1 || fl < last {
		t.Errorf("followed lines %d..%d: %v", ff, fl, err)
	}

	ls, err := hosts[0].OpenLogs(ctx, "tick", LogOptions{From: -1, Tail: 3})
	if err != nil {
		t.Fatal(err)
	}
	tail, _ := io.ReadAll(ls)
	ls.Close()
	tf, tl, err := counted(string(tail))
	if _, _, ok := ls.End(); err != nil || !ok || tl-tf != 2 || tl < last || strings.Count(string(tail), "\n") != 3 {
		t.Errorf("tail 3: %q (%d..%d, %v)", tail, tf, tl, err)
	}
}
