package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/cnet"
	"github.com/containerflow/containerflow/internal/criu"
	"github.com/containerflow/containerflow/internal/migration"
	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/testprog"
)

// faultEnv runs the counter server on hostA with a live connection.
func faultEnv(t *testing.T) (*env, *lineConn) {
	e := newEnv(t)
	e.runOn(testbed.HostA, ContainerSpec{Name: "py", IP: netip.MustParseAddr("198.18.0.2"), Args: testprog.Args(testprog.Counter)})
	lc := newLineConn(t, e.dial("198.18.0.2:7000"))
	lc.say("a", "1:a")
	return e, lc
}

// expectRolledBack checks the promise of a failed migration: the error
// says so, the container still runs on hostA with its connection (the
// counter goes on), and hostB holds nothing.
func expectRolledBack(t *testing.T, e *env, lc *lineConn, res *MigrationResult, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("migration succeeded despite the fault")
	}
	t.Logf("migration error (expected): %v", err)
	if res == nil || res.Record.Status != migration.StatusRolledBack {
		t.Fatalf("want a rolled_back record, got %+v", res)
	}
	info, gerr := e.clients[testbed.HostA].Get(context.Background(), "py")
	if gerr != nil || info.State != StateRunning {
		t.Fatalf("container on hostA after rollback: %+v %v", info, gerr)
	}
	lc.say("b", "2:b")
	deadline := time.Now().Add(5 * time.Second)
	for {
		names, _ := e.tb.ContainerNets(testbed.HostB)
		l, _ := e.agents[testbed.HostB].List(), 0
		if len(names) == 0 && len(l) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hostB still holds namespaces %v / containers %v", names, l)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func migrateAB(e *env) (*MigrationResult, error) {
	return e.clients[testbed.HostA].Migrate(context.Background(), "py", MigrateRequest{To: testbed.HostB})
}

func TestFaultStreamCut(t *testing.T) {
	e, lc := faultEnv(t)
	e.agents[testbed.HostA].faults.cutStreamAt = 200 << 10
	res, err := migrateAB(e)
	expectRolledBack(t, e, lc, res, err)
	// And with the fault gone, the same container migrates.
	e.agents[testbed.HostA].faults.cutStreamAt = 0
	if _, err := migrateAB(e); err != nil {
		t.Fatalf("migration after rollback: %v", err)
	}
	lc.say("c", "3:c")
	want := map[string]float64{"success": 1, "rolled_back": 1, "failed": 0}
	waitMigrations(t, e.clients[testbed.HostA], testbed.HostA, roleSource, want)
	waitMigrations(t, e.clients[testbed.HostB], testbed.HostB, roleDestination, want)
}

func TestFaultCorruptImage(t *testing.T) {
	e, lc := faultEnv(t)
	e.agents[testbed.HostA].faults.corruptAt = 300 << 10
	res, err := migrateAB(e)
	expectRolledBack(t, e, lc, res, err)
	if !strings.Contains(err.Error(), "checksum") && !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("error does not name the corruption: %v", err)
	}
}

func TestFaultSwitchRefuses(t *testing.T) {
	e, lc := faultEnv(t)
	e.steer.refuse = true
	res, err := migrateAB(e)
	e.steer.refuse = false
	expectRolledBack(t, e, lc, res, err)
}

func TestFaultDestinationAgentDies(t *testing.T) {
	e, lc := faultEnv(t)
	// The destination agent dies right after staging the container.
	e.hook = func(h string, r *http.Request) {
		if h == testbed.HostB && r.URL.Path == "/v1/migrations" {
			go e.stopAgent(testbed.HostB)
		}
	}
	res, err := migrateAB(e)
	e.hook = nil
	if err == nil {
		t.Fatal("migration succeeded with a dead destination")
	}
	if res == nil || res.Record.Status != migration.StatusRolledBack {
		t.Fatalf("want rolled_back, got %+v (%v)", res, err)
	}
	lc.say("b", "2:b")
	// A restarted agent removes what the interrupted migration staged.
	e.startAgent(testbed.HostB)
	if names, _ := e.tb.ContainerNets(testbed.HostB); len(names) != 0 {
		t.Fatalf("restarted hostB agent left staged namespaces: %v", names)
	}
	if _, err := migrateAB(e); err != nil {
		t.Fatalf("migration after the destination came back: %v", err)
	}
	lc.say("c", "3:c")
}

func TestFaultUnreachableDestination(t *testing.T) {
	e, lc := faultEnv(t)
	e.stopAgent(testbed.HostB)
	res, err := migrateAB(e)
	expectRolledBack(t, e, lc, res, err)
}

// killCRIUAtLine kills the CRIU process that has a file matching
// workDirPart open as soon as its log (dump.log or restore.log) has a line
// containing marker.
func killCRIUAtLine(workDirPart, marker string, stop <-chan struct{}) <-chan int {
	return killCRIUWhen(workDirPart, true, stop, func(pid int, log string) bool {
		// From here only what is new in its log is read, which is quick
		// enough to land within the few ms the step lasts.
		f, err := os.Open(log)
		if err != nil {
			return false
		}
		defer f.Close()
		var seen []byte
		buf := make([]byte, 64<<10)
		for syscall.Kill(pid, 0) == nil {
			n, _ := f.Read(buf)
			seen = append(seen, buf[:n]...)
			if bytes.Contains(seen, []byte(marker)) {
				return true
			}
			seen = seen[max(0, len(seen)-len(marker)):]
		}
		return false
	})
}

// killCRIUWhen waits for the CRIU process findCRIU(workDirPart, needLog)
// finds, then for ready, and kills it if ready says so; the channel
// carries the pid it killed and is closed either way.
func killCRIUWhen(workDirPart string, needLog bool, stop <-chan struct{}, ready func(pid int, log string) bool) <-chan int {
	killed := make(chan int, 1)
	go func() {
		defer close(killed)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if pid, log := findCRIU(workDirPart, needLog); pid != 0 {
				if ready(pid, log) {
					_ = syscall.Kill(pid, syscall.SIGKILL)
					killed <- pid
				}
				return
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	return killed
}

// findCRIU returns a `criu swrk` process with a file matching workDirPart
// open (its images or work directory: which tells the source's dump from
// the destination's restore), and its log; with needLog only one that
// has its log open (CRIU's children share its command line and files, not
// the log).
func findCRIU(workDirPart string, needLog bool) (int, string) {
	ents, _ := os.ReadDir("/proc")
	for _, en := range ents {
		pid, err := strconv.Atoi(en.Name())
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", en.Name(), "cmdline"))
		if !strings.Contains(string(cmd), "criu") || !strings.Contains(string(cmd), "swrk") {
			continue
		}
		var match bool
		var log string
		fds, _ := os.ReadDir(filepath.Join("/proc", en.Name(), "fd"))
		for _, fd := range fds {
			target, _ := os.Readlink(filepath.Join("/proc", en.Name(), "fd", fd.Name()))
			match = match || strings.Contains(target, workDirPart)
			if strings.HasSuffix(target, "/dump.log") || strings.HasSuffix(target, "/restore.log") {
				log = target // not the container's own output logs, also open
			}
		}
		if match && (log != "" || !needLog) {
			return pid, log
		}
	}
	return 0, ""
}

// killCRIU kills, `after` it appears, the CRIU process that has a file
// matching workDirPart open.
func killCRIU(workDirPart string, after time.Duration, stop <-chan struct{}) <-chan int {
	return killCRIUWhen(workDirPart, false, stop, func(int, string) bool {
		time.Sleep(after)
		return true
	})
}

// CRIU is killed at several points of the dump (early: while it seizes
// the tasks; later: while it dumps sockets and memory) and of the restore.
func TestFaultCRIUKilled(t *testing.T) {
	for _, c := range []struct {
		name  string
		where string // a piece of the CRIU work directory's path
		after time.Duration
	}{
		{"dump-early", "-hostA/py-", 2 * time.Millisecond},
		{"dump-late", "-hostA/py-", 25 * time.Millisecond},
		{"restore-early", "-hostB/in-py-", 2 * time.Millisecond},
		{"restore-late", "-hostB/in-py-", 25 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, lc := faultEnv(t)
			stop := make(chan struct{})
			killed := killCRIU(c.where, c.after, stop)
			res, err := migrateAB(e)
			close(stop)
			if pid, ok := <-killed; !ok || err == nil {
				// The timing is a race with CRIU: if the kill missed, or
				// landed after CRIU had done its work, nothing was tested.
				lc.say("b", "2:b")
				t.Skipf("the kill (pid %d, %v) did not interrupt CRIU this time (migration error: %v); nothing was tested", pid, ok, err)
			}
			if res != nil && res.Record.Status == migration.StatusFailed {
				// CRIU killed while its parasite code runs inside the
				// tasks takes them down with it (the parasite traps with
				// no tracer left); no image exists to roll back to. The
				// promise then is a clear failure and nothing left over.
				if !strings.HasPrefix(c.name, "dump") {
					t.Fatalf("a restore-side fault must roll back, got %+v", res.Record)
				}
				t.Logf("container lost with the killed dump (expected possibility): %v", err)
				if _, gerr := e.clients[testbed.HostA].Get(context.Background(), "py"); gerr == nil {
					t.Error("lost container still listed on hostA")
				}
				for _, h := range testbed.Hosts {
					if names, _ := e.tb.ContainerNets(h); len(names) != 0 {
						t.Errorf("%s still holds namespaces %v", h, names)
					}
				}
				return
			}
			expectRolledBack(t, e, lc, res, err)
		})
	}
}

// CRIU killed after it has put the container's sockets in TCP repair mode
// and taken its parasite out of the tasks (it is dumping the namespaces),
// while the client and the program both send: the rollback takes the
// sockets out of repair mode, and the connection goes on with nothing
// lost. CRIU lets the tasks run the moment it dies, so the program meets
// its sockets in repair mode first (a read fails with EPERM): the Ticker
// retries; a program that gives up on the connection loses it, which
// nothing on this side of CRIU can prevent (docs/soak.md, finding 11).
func TestCRIUKilledWithSocketsInRepair(t *testing.T) {
	for _, marker := range []string{"Dumping task cwd id", "Dumping pstree"} {
		t.Run(strings.ReplaceAll(marker, " ", "_"), func(t *testing.T) {
			e := newEnv(t)
			e.runOn(testbed.HostA, ContainerSpec{Name: "tk", IP: netip.MustParseAddr("198.18.0.2"), Args: testprog.Args(testprog.Ticker)})
			c := e.dial("198.18.0.2:7000")
			sendErr := make(chan error, 1)
			done := make(chan struct{})
			defer close(done)
			go func() { // the client's side of the traffic, every 5 ms
				for {
					select {
					case <-done:
						sendErr <- nil
						return
					case <-time.After(5 * time.Millisecond):
					}
					if _, err := c.Write([]byte("x\n")); err != nil {
						sendErr <- err
						return
					}
				}
			}()
			rd := bufio.NewReader(c)
			next := 1
			// readTicks reads for d and returns the longest wait for a tick.
			readTicks := func(d time.Duration) (gap time.Duration) {
				t.Helper()
				last := time.Now()
				for end := last.Add(d); time.Now().Before(end); next++ {
					_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
					line, err := rd.ReadString('\n')
					if err != nil {
						t.Fatalf("after tick %d: %v", next-1, err)
					}
					if line != fmt.Sprintf("%d\n", next) {
						t.Fatalf("got tick %q, want %d", line, next)
					}
					gap, last = max(gap, time.Since(last)), time.Now()
				}
				return gap
			}
			readTicks(100 * time.Millisecond)
			// The kill races CRIU's last milliseconds: a kill that comes
			// too late leaves a completed migration, and the next attempt
			// goes back the other way.
			var res *MigrationResult
			var err error
			from, to := testbed.HostA, testbed.HostB
			for attempt := 1; ; attempt++ {
				stop := make(chan struct{})
				killed := killCRIUAtLine("-"+from+"/tk-", marker, stop)
				res, err = e.clients[from].Migrate(context.Background(), "tk", MigrateRequest{To: to})
				close(stop)
				if _, ok := <-killed; ok && err != nil {
					break
				}
				if err != nil {
					t.Fatalf("migration failed without the kill: %v", err)
				}
				if attempt == 4 {
					t.Skipf("CRIU was not killed at %q before it answered in %d attempts: nothing was tested", marker, attempt)
				}
				readTicks(100 * time.Millisecond)
				from, to = to, from
			}
			if res == nil || res.Record.Status != migration.StatusRolledBack {
				t.Fatalf("want a rolled-back migration, got %+v, %v", res, err)
			}
			t.Logf("migration error (expected): %v", err)
			// What the program wrote meanwhile comes first; from then on a
			// tick every 5 ms. A socket left in repair mode would still
			// deliver, but only at its retransmission timeouts (200 ms
			// and up).
			readTicks(300 * time.Millisecond)
			if gap := readTicks(time.Second); gap > 100*time.Millisecond {
				t.Errorf("ticks stalled for %v after the rollback: the socket is still in repair mode?", gap)
			}
			select {
			case err := <-sendErr:
				t.Fatalf("client send: %v", err)
			default:
			}
		})
	}
}

// A restore's CRIU killed once it has made its mount directory
// (/tmp/.criu.mntns.XXXXXX): the migration rolls back and the directory
// does not outlive it (soak finding 12) — whether CRIU had named it in its
// log yet (the log says which) or not (the fanotify watch says which).
func TestKilledRestoreLeavesNoMountDir(t *testing.T) {
	for _, c := range []struct{ name, marker string }{
		{"not-yet-logged", "mnt: Reading mountpoint images"},
		{"logged", "@ /tmp/.criu.mntns."},
	} {
		marker := c.marker
		t.Run(c.name, func(t *testing.T) {
			// Other packages' tests restore in parallel and make their
			// own directories there: only the killed CRIU's count, and
			// the kernel says which those are.
			watch, err := criu.WatchYards(0)
			if err != nil {
				t.Skipf("cannot tell which CRIU made which directory: %v", err)
			}
			defer watch.Close()
			e, lc := faultEnv(t)
			stop := make(chan struct{})
			killed := killCRIUAtLine("-hostB/in-py-", marker, stop)
			res, err := migrateAB(e)
			close(stop)
			pid, ok := <-killed
			if !ok || err == nil {
				t.Skipf("CRIU was not killed at %q (migration error: %v): nothing was tested", marker, err)
			}
			expectRolledBack(t, e, lc, res, err)
			made := watch.MadeBy(pid)
			if len(made) == 0 {
				t.Skipf("CRIU was killed at %q before it made its mount directory: nothing was tested", marker)
			}
			for _, d := range made {
				if _, err := os.Lstat(d); err == nil {
					t.Errorf("the killed CRIU's %s is still there", d)
				}
			}
		})
	}
}

func TestSecondMigrationIsRefused(t *testing.T) {
	e, lc := faultEnv(t)
	done := make(chan error, 1)
	go func() { _, err := migrateAB(e); done <- err }()
	var got error
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		info, _ := e.clients[testbed.HostA].Get(context.Background(), "py")
		if info.State == StateMigrating {
			_, got = migrateAB(e)
			break
		}
		time.Sleep(time.Millisecond)
	}
	var apiErr *APIError
	if !errors.As(got, &apiErr) || apiErr.Status != http.StatusConflict {
		t.Errorf("second migration: want HTTP 409, got %v", got)
	}
	if err := <-done; err != nil {
		t.Fatalf("first migration: %v", err)
	}
	lc.say("b", "2:b")
}

func TestBadMigrationRequests(t *testing.T) {
	e, lc := faultEnv(t)
	ctx := context.Background()
	cases := []struct {
		name   string
		req    MigrateRequest
		status int
	}{
		{"py", MigrateRequest{To: testbed.HostA}, http.StatusBadRequest},
		{"py", MigrateRequest{To: "hostC"}, http.StatusNotFound},
		{"nope", MigrateRequest{To: testbed.HostB}, http.StatusNotFound},
		{"py", MigrateRequest{To: testbed.HostB, QuiesceSignal: 99}, http.StatusBadRequest},
		{"py", MigrateRequest{To: testbed.HostB, Compress: "gzip"}, http.StatusBadRequest},
	}
	for _, c := range cases {
		_, err := e.clients[testbed.HostA].Migrate(ctx, c.name, c.req)
		var apiErr *APIError
		if !errors.As(err, &apiErr) || apiErr.Status != c.status {
			t.Errorf("migrate %s %+v: want HTTP %d, got %v", c.name, c.req, c.status, err)
		}
	}
	// Writes need the token.
	anon := NewClient(testbed.AgentURL(testbed.HostA), ClientOptions{Netns: e.configs[testbed.HostA].HostNetns})
	_, err := anon.Migrate(ctx, "py", MigrateRequest{To: testbed.HostB})
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnauthorized {
		t.Errorf("migrate without token: want 401, got %v", err)
	}
	if _, err := anon.List(ctx); err != nil {
		t.Errorf("reads need no token: %v", err)
	}
	// Bad container specs.
	for _, s := range []ContainerSpec{
		{Name: "x", IP: netip.MustParseAddr("198.18.0.9")},
		{Name: "bad name", IP: netip.MustParseAddr("198.18.0.9"), Args: []string{"true"}},
		{Name: "py", IP: netip.MustParseAddr("198.18.0.9"), Args: []string{"true"}},
		{Name: "dup", IP: netip.MustParseAddr("198.18.0.2"), Args: []string{"true"}},
	} {
		if _, err := e.clients[testbed.HostA].Run(ctx, s); err == nil {
			t.Errorf("run %+v: accepted", s)
		}
	}
	lc.say("b", "2:b")
}

// A client that goes away while the container is frozen (an interrupted
// CLI) must not cost the container: the dump is not killed with the
// request, and the migration rolls back on its own.
func TestClientGoneDuringTheDump(t *testing.T) {
	e, lc := faultEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	// Gone while CRIU's parasite is inside the tasks, where a killed CRIU
	// takes them with it.
	e.agents[testbed.HostA].faults.afterFreeze = func() { time.AfterFunc(30*time.Millisecond, cancel) }
	if _, err := e.clients[testbed.HostA].Migrate(ctx, "py", MigrateRequest{To: testbed.HostB}); err == nil {
		t.Fatal("the cancelled request reported success")
	}
	e.agents[testbed.HostA].faults.afterFreeze = nil
	// Rolled back, or — when the destination had gone live before the
	// request's end reached it — moved: either way in one place, serving.
	on, off := runningOnOneHost(t, e, "py")
	t.Logf("container ended on %s", on)
	lc.say("b", "2:b")
	expectHostEmpty(t, e, off)
}

// runningOnOneHost waits until the container runs on hostA or hostB and
// says where, and where it is not.
func runningOnOneHost(t *testing.T, e *env, name string) (on, off string) {
	t.Helper()
	deadline := time.Now().Add(40 * time.Second)
	for {
		a, aerr := e.clients[testbed.HostA].Get(context.Background(), name)
		b, berr := e.clients[testbed.HostB].Get(context.Background(), name)
		switch {
		case aerr == nil && a.State == StateRunning && berr != nil:
			return testbed.HostA, testbed.HostB
		case berr == nil && b.State == StateRunning && aerr != nil:
			return testbed.HostB, testbed.HostA
		}
		if time.Now().After(deadline) {
			t.Fatalf("container not running on exactly one host: hostA %+v %v, hostB %+v %v", a, aerr, b, berr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The source's request ends after the destination went live (the client
// gone, a stream cut by the network): the clients already talk to the
// restored copy, so it must not be killed; the source learns the outcome
// from the destination and completes the migration. (Before, the
// destination's CRIU was killed after go-live, the source rolled back,
// and the client's connection died with the client's TCP state ahead of
// the source's: found as a flake of TestClientGoneDuringTheDump.)
func TestRequestEndsAfterGoLive(t *testing.T) {
	e, lc := faultEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	e.agents[testbed.HostB].faults.afterGoLive = cancel
	_, err := e.clients[testbed.HostA].Migrate(ctx, "py", MigrateRequest{To: testbed.HostB})
	e.agents[testbed.HostB].faults.afterGoLive = nil
	if err == nil {
		t.Fatal("the cancelled request reported success")
	}
	if on, _ := runningOnOneHost(t, e, "py"); on != testbed.HostB {
		t.Fatalf("container on %s, want hostB: it had gone live there", on)
	}
	lc.say("b", "2:b")
	expectHostEmpty(t, e, testbed.HostA)
	// The record of the migration says success (kept on the source).
	// And the container can go back.
	if _, err := e.clients[testbed.HostB].Migrate(context.Background(), "py", MigrateRequest{To: testbed.HostA}); err != nil {
		t.Fatalf("migration back: %v", err)
	}
	lc.say("c", "3:c")
}

// The destination's agent dies after its copy went live, before it
// answered the image stream: the clients talk to that copy, so the source
// must not roll back under them, and the agent's next run must not remove
// it. The source asks again until the restarted agent, which adopted the
// restored copy, answers; then it commits. (cflow bench soak, finding 14:
// the source rolled back at once, the restarted agent removed the live
// copy, and its sockets closed every connection with a FIN.)
func TestDestinationAgentDiesAfterGoLive(t *testing.T) {
	e, lc := faultEnv(t)
	b := e.agents[testbed.HostB]
	wentLive, proceed := make(chan struct{}), make(chan struct{})
	b.faults.afterGoLive = func() { close(wentLive); <-proceed }
	type result struct {
		res *MigrationResult
		err error
	}
	done := make(chan result, 1)
	go func() { res, err := migrateAB(e); done <- result{res, err} }()
	<-wentLive
	e.stopAgent(testbed.HostB) // the request ends unanswered; questions are refused
	close(proceed)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if o, err := b.outcomeOf(ctx, "py"); err != nil || !o.Restored {
		t.Fatalf("the restore under the dead agent: %+v, %v", o, err)
	}
	// The clients moved on with the restored copy while its agent was away.
	lc.say("b", "2:b")
	e.startAgent(testbed.HostB)
	r := <-done
	if r.err != nil || r.res.Record.Status != migration.StatusSuccess {
		t.Fatalf("want the migration completed on hostB, got %+v, %v", r.res, r.err)
	}
	if on, _ := runningOnOneHost(t, e, "py"); on != testbed.HostB {
		t.Fatalf("container on %s, want hostB", on)
	}
	lc.say("c", "3:c")
	expectHostEmpty(t, e, testbed.HostA)
	// Adopted and committed like any other: it can leave again.
	if _, err := e.clients[testbed.HostB].Migrate(context.Background(), "py", MigrateRequest{To: testbed.HostA}); err != nil {
		t.Fatalf("migration back: %v", err)
	}
	lc.say("d", "4:d")
}

// The destination's container namespace removed (by someone else) while
// the migration is staged: the restore must not count as done — the copy
// would be locked in a namespace nobody can name — so the source keeps
// its container. (Found by cflow bench soak: the record said success and
// the container was lost.)
func TestFaultDestinationNamespaceRemoved(t *testing.T) {
	e, lc := faultEnv(t)
	e.hook = func(h string, r *http.Request) {
		if h == testbed.HostB && r.URL.Path == "/v1/migrations" {
			_ = cnet.Delete(e.agents[testbed.HostB].netns("py"))
		}
	}
	res, err := migrateAB(e)
	e.hook = nil
	expectRolledBack(t, e, lc, res, err)
	if _, err := migrateAB(e); err != nil {
		t.Fatalf("migration after the fault: %v", err)
	}
	lc.say("c", "3:c")
}

// A source that staged a migration and then lost it (its agent killed
// and restarted) must not leave the destination refusing the next one:
// the next prepare from the same source replaces the stale staging.
// (cflow bench soak finding 7: the next attempt was refused once.)
func TestStaleIncomingReplaced(t *testing.T) {
	e, lc := faultEnv(t)
	a := e.agents[testbed.HostA]
	info, err := a.Get("py")
	if err != nil {
		t.Fatal(err)
	}
	peer, err := a.peerClient(testbed.HostB, false)
	if err != nil {
		t.Fatal(err)
	}
	// What a source does first, and then nothing more.
	if err := peer.do(context.Background(), "POST", "/v1/migrations", PrepareRequest{Spec: info.ContainerSpec, From: testbed.HostA}, nil); err != nil {
		t.Fatalf("prepare: %v", err)
	}
	if _, err := e.agents[testbed.HostB].Get("py"); err != nil {
		t.Fatalf("nothing staged on hostB: %v", err)
	}
	if _, err := migrateAB(e); err != nil {
		t.Fatalf("migration after a stale staging: %v", err)
	}
	lc.say("b", "2:b")
	expectHostEmpty(t, e, testbed.HostA)
}

// A container with a CPU limit: the source lifts it for the dump (CRIU's
// parasite runs in the frozen tasks) and puts it back when the migration
// rolls back, and the destination applies it once restored.
func TestCPULimitAfterRollbackAndMove(t *testing.T) {
	e := newEnv(t)
	spec := ContainerSpec{Name: "py", IP: netip.MustParseAddr("198.18.0.2"), Args: testprog.Args(testprog.Counter)}
	spec.Resources.CPUs, spec.Resources.MemoryBytes = 0.2, 64<<20
	e.runOn(testbed.HostA, spec)
	lc := newLineConn(t, e.dial("198.18.0.2:7000"))
	lc.say("a", "1:a")
	e.agents[testbed.HostA].faults.cutStreamAt = 200 << 10
	res, err := migrateAB(e)
	e.agents[testbed.HostA].faults.cutStreamAt = 0
	expectRolledBack(t, e, lc, res, err)
	info, _ := e.clients[testbed.HostA].Get(context.Background(), "py")
	checkCgroupLimits(t, info.Pid, 64<<20, 20000)
	if _, err := migrateAB(e); err != nil {
		t.Fatal(err)
	}
	lc.say("c", "3:c")
	info, _ = e.clients[testbed.HostB].Get(context.Background(), "py")
	checkCgroupLimits(t, info.Pid, 64<<20, 20000)
}

// CRIU on the destination dies after the go-live but before the tasks
// resume, while the client sends: the source rolls back, and the
// client's data must not have been acknowledged by a copy that then died
// (soak finding 13: the destination's kernel took it, the source never
// saw it, and the connection was dead after the rollback).
func TestDestinationCRIUDiesBeforeResume(t *testing.T) {
	e, lc := faultEnv(t)
	b := e.agents[testbed.HostB]
	b.faults.afterGoLive = func() {
		b.mu.Lock()
		rs := b.containers["py"].incoming.restorer
		b.mu.Unlock()
		// The line reaches the destination, which now owns the address.
		if _, err := fmt.Fprintf(lc.c, "b\n"); err != nil {
			t.Errorf("send: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
		_ = syscall.Kill(rs.CRIUPid(), syscall.SIGKILL)
	}
	res, err := migrateAB(e)
	b.faults.afterGoLive = nil
	if err == nil || res == nil || res.Record.Status != migration.StatusRolledBack {
		t.Fatalf("want a rolled-back migration, got %+v, %v", res, err)
	}
	// The source answers the line the destination must not have taken.
	_ = lc.c.SetDeadline(time.Now().Add(15 * time.Second))
	got, err := lc.rd.ReadString('\n')
	if err != nil || got != "2:b\n" {
		t.Fatalf("after the rollback: got %q, %v; want \"2:b\"", got, err)
	}
	lc.say("c", "3:c")
}

// CRIU on the destination dies after the container resumed (killed at
// its post-resume notification): the container runs there and its clients
// may already talk to it, so the migration completes instead of killing
// it and rolling back under them (found by cflow bench soak,
// criu-kill-restore: the record said rolled_back and the clients were
// ahead of the source's copy).
func TestDestinationCRIUDiesAfterResume(t *testing.T) {
	e, lc := faultEnv(t)
	b := e.agents[testbed.HostB]
	e.hook = func(h string, r *http.Request) {
		// Answered: the restorer waits for the images.
		if h != testbed.HostB || r.URL.Path != "/v1/migrations" {
			return
		}
		b.mu.Lock()
		rs := b.containers["py"].incoming.restorer
		b.mu.Unlock()
		rs.OnResumed = func() { _ = syscall.Kill(rs.CRIUPid(), syscall.SIGKILL) }
	}
	res, err := migrateAB(e)
	e.hook = nil
	if err != nil || res.Record.Status != migration.StatusSuccess {
		t.Fatalf("want the migration to complete: %+v %v", res, err)
	}
	lc.say("b", "2:b")
	expectHostEmpty(t, e, testbed.HostA)
	if _, err := e.clients[testbed.HostB].Migrate(context.Background(), "py", MigrateRequest{To: testbed.HostA}); err != nil {
		t.Fatalf("migration back: %v", err)
	}
	lc.say("c", "3:c")
}
