// Package soakbench is `cflow bench soak`: many migrations of the
// sequence-checked stream workload back and forth between the testbed's
// hosts, with faults injected from outside (real processes killed, files
// corrupted, links cut) at random times, to check over a long run what a
// single test cannot: that no byte is ever lost or duplicated, that a
// connection drops only where a fault makes it unavoidable, that every
// failed migration rolls back or is accounted as a lost container, and
// that neither the daemons nor the host accumulate anything.
package soakbench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/containerflow/containerflow/internal/agent"
	"github.com/containerflow/containerflow/internal/migration"
	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/workload/stream"
)

// Options configures a soak.
type Options struct {
	Migrations int
	// FaultRate is the probability that a migration gets a fault.
	FaultRate float64
	// Seed makes the faults (which, when, where) repeat.
	Seed int64
	// Faults lists the kinds drawn from (nil: AllFaults).
	Faults      []string
	Connections int
	Interval    time.Duration // between records, each direction
	Settle      time.Duration // after each migration
	// SampleEvery is how often (in migrations) the daemons are sampled.
	SampleEvery int
	Bounds      Bounds
	Binary      string // cflow: agents, controller and the in-container server
	Prefix      string // testbed prefix; random when empty
	// LogsDir, when set, receives the agents' and controller's logs and
	// the CRIU logs of failed migrations before the testbed is removed.
	LogsDir  string
	Progress io.Writer
}

// baseIP is the first container's address; each replacement takes the
// next, so a lost container's reservation never blocks its successor.
var baseIP = netip.MustParseAddr("198.18.0.2")

const port = 9000

type ctr struct {
	name  string
	ip    netip.Addr
	where string
	conns []*stream.Conn
	// dropped: connections already accounted as dropped.
	dropped map[int]bool
}

type soak struct {
	o       Options
	tb      *testbed.Testbed
	clients map[string]*agent.Client
	cur     *ctr
	gen     int
	res     *Result
}

func (s *soak) imagesDir(host string) string {
	return filepath.Join("/dev/shm/containerflow", strings.TrimSuffix(s.tb.ContainerNetnsPrefix(host), "-"))
}

// Run performs the soak on a fresh testbed and removes it afterwards.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Migrations < 1 || o.FaultRate < 0 || o.FaultRate > 1 || o.Connections < 1 || o.Interval <= 0 {
		return nil, errors.New("migrations and connections must be >= 1, faults in [0,1], interval > 0")
	}
	if len(o.Faults) == 0 {
		o.Faults = AllFaults
	}
	for _, f := range o.Faults {
		ok := false
		for _, k := range AllFaults {
			ok = ok || f == k
		}
		if !ok {
			return nil, fmt.Errorf("fault %q: one of %s", f, strings.Join(AllFaults, ", "))
		}
	}
	if o.SampleEvery < 1 {
		o.SampleEvery = 10
	}
	if o.Bounds == (Bounds{}) {
		o.Bounds = DefaultBounds
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Prefix == "" {
		b := make([]byte, 2)
		_, _ = rand.Read(b)
		o.Prefix = "sk" + hex.EncodeToString(b)
	}
	began := time.Now()
	tb, err := testbed.Up(testbed.Config{Prefix: o.Prefix, AgentBinary: o.Binary})
	if err != nil {
		return nil, err
	}
	s := &soak{o: o, tb: tb, clients: map[string]*agent.Client{}, res: newResult(o)}
	defer func() {
		// Whatever happened, nothing of the testbed stays; what Down
		// could not remove is reported.
		if o.LogsDir != "" {
			if err := copyLogs(tb.Dir(), o.LogsDir); err != nil {
				s.res.Verdicts = append(s.res.Verdicts, "copy logs: "+err.Error())
			}
		}
		if derr := testbed.Down(o.Prefix); derr != nil {
			s.res.Verdicts = append(s.res.Verdicts, "testbed down: "+derr.Error())
		}
		s.res.AfterDown = s.leftAfterDown()
		if len(s.res.AfterDown) > 0 {
			s.res.Pass = false
			s.res.Verdicts = append(s.res.Verdicts, "left on the machine after testbed down: "+strings.Join(s.res.AfterDown, ", "))
		}
		s.res.DurationS = time.Since(began).Seconds()
	}()
	tok, err := tb.Token()
	if err != nil {
		return s.res, err
	}
	for _, h := range tb.Hosts() {
		s.clients[h] = agent.NewClient("unix://"+tb.AgentSocket(h), agent.ClientOptions{Token: tok})
	}
	s.res.HostStart = s.hostSnapshot()
	s.res.Procs = append(s.res.Procs, s.procSamples(0)...)
	if err := s.replace(ctx, testbed.HostA); err != nil {
		return s.res, err
	}
	sleep(ctx, time.Second)
	rng := mrand.New(mrand.NewPCG(uint64(o.Seed), 0x50a4))
	var runErr error
	for n := 1; n <= o.Migrations && ctx.Err() == nil; n++ {
		var f *Fault
		if rng.Float64() < o.FaultRate {
			f = draw(rng, o.Faults)
		}
		if err := s.migrate(ctx, n, f); err != nil {
			runErr = err
			break
		}
		if n%o.SampleEvery == 0 || n == o.Migrations {
			s.res.Procs = append(s.res.Procs, s.procSamples(n)...)
		}
	}
	s.finish()
	s.res.summarize(o.Bounds)
	if runErr == nil {
		runErr = ctx.Err()
	}
	return s.res, runErr
}

// replace starts a new workload container (the first, or the successor
// of a lost one) on host and connects the clients.
func (s *soak) replace(ctx context.Context, host string) error {
	s.gen++
	c := &ctr{name: fmt.Sprintf("soak%d", s.gen), ip: baseIP, where: host, dropped: map[int]bool{}}
	for range s.gen - 1 {
		c.ip = c.ip.Next()
	}
	bin := "/opt/cflow/bin/" + filepath.Base(s.o.Binary)
	args := []string{bin, "workload", "stream-server", "--listen", fmt.Sprintf(":%d", port), "--interval", s.o.Interval.String()}
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if _, err := s.clients[host].Run(rctx, agent.ContainerSpec{Name: c.name, IP: c.ip, Args: args}); err != nil {
		return fmt.Errorf("start workload %s on %s: %w", c.name, host, err)
	}
	addr := fmt.Sprintf("%s:%d", c.ip, port)
	for range s.o.Connections {
		deadline := time.Now().Add(30 * time.Second)
		for {
			nc, err := s.tb.Dial(testbed.Client, "tcp4", addr, time.Second)
			if err == nil {
				c.conns = append(c.conns, stream.Start(nc, s.o.Interval, 50*time.Millisecond))
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("connect to %s: %w", c.name, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	s.cur = c
	s.res.Containers++
	return nil
}

func other(h string) string {
	if h == testbed.HostA {
		return testbed.HostB
	}
	return testbed.HostA
}

// migrate runs migration n with fault f (nil: none), brings the testbed
// back (restarts, impairments cleared), finds where the container ended
// and whether it still serves, and accounts the outcome and every drop.
// Only a testbed that cannot be brought back is an error.
func (s *soak) migrate(ctx context.Context, n int, f *Fault) error {
	c := s.cur
	from, to := c.where, other(c.where)
	ev := Event{N: n, Container: c.name, From: from, To: to, Fault: f}
	start := time.Now()
	ictx, icancel := context.WithCancel(ctx)
	var in *injector
	if f != nil {
		in = s.inject(ictx, f, c.name, from, to, start)
	}
	mctx, mcancel := context.WithTimeout(ctx, 2*time.Minute)
	res, err := s.clients[from].Migrate(mctx, c.name, agent.MigrateRequest{To: to})
	mcancel()
	icancel()
	ev.TotalMs = msSince(start)
	if in != nil {
		<-in.done
		for _, u := range in.undo {
			if uerr := u(); uerr != nil {
				return fmt.Errorf("migration %d: undo %s: %w", n, f.Kind, uerr)
			}
		}
	}
	if res != nil {
		ev.Status, ev.TimeToReadyMs = res.Record.Status, res.Record.TimeToReadyMs
	}
	if err != nil {
		ev.Error = err.Error()
	}
	if f != nil && f.Fired {
		f.Phase = phaseAt(res, f.at)
		if f.Kind == FaultCRIUKillDump {
			f.SocketsInRepair = dumpHadSocketsInRepair(ev.Error)
		}
	}
	// Where is it now, and does it serve every connection?
	recStart := time.Now()
	where, state := s.locate(ctx, c.name, 30*time.Second)
	stuck := ""
	if where != "" {
		stuck = s.progressing(c, 5*time.Second)
	}
	ev.RecoverMs = msSince(recStart)
	switch {
	case where == to && stuck == "":
		ev.Outcome = OutcomeSuccess
	case where == from && stuck == "":
		ev.Outcome = OutcomeRolledBack
	case where == "":
		ev.Outcome, ev.LostWhy = OutcomeLost, "container on neither host ("+state+")"
	default:
		ev.Outcome, ev.LostWhy = OutcomeLost, fmt.Sprintf("container %s on %s but not serving: %s", state, where, stuck)
	}
	if ev.Status != "" && ev.Status != expectStatus(ev.Outcome) {
		ev.Mismatch = fmt.Sprintf("the record says %s, the container is %s", ev.Status, ev.Outcome)
	}
	if where != "" {
		c.where = where
	}
	for i, cn := range c.conns {
		st := cn.Stats()
		if st.Dropped && !c.dropped[i] {
			c.dropped[i] = true
			d := Drop{Container: c.name, Conn: i, Err: st.Err}
			d.Unavoidable, d.Why = explain(ev.Outcome, f)
			ev.Drops = append(ev.Drops, d)
		}
	}
	if ev.Outcome == OutcomeLost {
		// The container is gone or useless: its connections with it.
		for i, cn := range c.conns {
			if !c.dropped[i] {
				c.dropped[i] = true
				d := Drop{Container: c.name, Conn: i, Err: "closed: container replaced"}
				d.Unavoidable, d.Why = explain(ev.Outcome, f)
				ev.Drops = append(ev.Drops, d)
			}
			_ = cn
		}
		s.retire(c)
		host := testbed.HostA
		if where != "" {
			host = where
		}
		if err := s.replace(ctx, host); err != nil {
			if err2 := s.replace(ctx, other(host)); err2 != nil {
				return fmt.Errorf("migration %d: replace lost container: %w; %w", n, err, err2)
			}
		}
		ev.Replaced = s.cur.name
	}
	s.res.add(ev)
	p := fmt.Sprintf("%4d %s %s -> %s: %-11s", n, c.name, from, to, ev.Outcome)
	if ev.Outcome == OutcomeSuccess {
		p += fmt.Sprintf(" ready %.0f ms", ev.TimeToReadyMs)
	}
	if f != nil {
		p += fmt.Sprintf("  fault %s (%s) fired=%v at %.0f ms, phase %s", f.Kind, f.Target, f.Fired, f.AtMs, f.Phase)
	}
	if len(ev.Drops) > 0 {
		p += fmt.Sprintf("  %d connections dropped", len(ev.Drops))
	}
	if ev.Mismatch != "" {
		p += "  MISMATCH: " + ev.Mismatch
	}
	fmt.Fprintln(s.o.Progress, p)
	sleep(ctx, s.o.Settle)
	return nil
}

// expectStatus is the record's status for an outcome.
func expectStatus(o string) string {
	switch o {
	case OutcomeSuccess:
		return migration.StatusSuccess
	case OutcomeRolledBack:
		return migration.StatusRolledBack
	}
	return migration.StatusFailed
}

// locate finds the host where the container runs. A container still
// migrating or incoming (a sequence still unwinding) is waited for.
func (s *soak) locate(ctx context.Context, name string, timeout time.Duration) (host, state string) {
	deadline := time.Now().Add(timeout)
	for {
		var running []string
		var states []string
		for _, h := range s.tb.Hosts() {
			gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			info, err := s.clients[h].Get(gctx, name)
			cancel()
			switch {
			case err == nil && info.State == agent.StateRunning:
				running = append(running, h)
				states = append(states, h+":"+info.State)
			case err == nil:
				states = append(states, h+":"+info.State)
			default:
				var ae *agent.APIError
				if !errors.As(err, &ae) {
					states = append(states, h+": "+err.Error())
				}
			}
		}
		state = strings.Join(states, ", ")
		if len(running) == 1 && len(states) == 1 {
			return running[0], state
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if len(running) == 1 {
				return running[0], state
			}
			if len(running) > 1 {
				// Two running copies: the worst outcome; reported as lost
				// with both named.
				return "", "running on both hosts: " + state
			}
			if state == "" {
				state = "unknown to both agents"
			}
			return "", state
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// progressing waits until every live connection has received both an
// echo and a server record it had not before; "" when so, else what
// stalled.
func (s *soak) progressing(c *ctr, timeout time.Duration) string {
	type mark struct{ echo, srv uint64 }
	base := map[int]mark{}
	for i, cn := range c.conns {
		st := cn.Stats()
		base[i] = mark{st.Echo.Received, st.Server.Received}
	}
	deadline := time.Now().Add(timeout)
	for {
		var stalled []string
		for i, cn := range c.conns {
			st := cn.Stats()
			if st.Dropped {
				continue
			}
			if st.Echo.Received <= base[i].echo || st.Server.Received <= base[i].srv {
				stalled = append(stalled, fmt.Sprint(i))
			}
		}
		if len(stalled) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return fmt.Sprintf("connections %s silent for %v", strings.Join(stalled, ","), timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// retire stops a container's connections, folds their figures into the
// result and removes the container (and whatever a half-done migration
// left of it) from both hosts.
func (s *soak) retire(c *ctr) {
	for _, cn := range c.conns {
		s.res.addConn(cn.Stop(context.Background(), 3*time.Second))
	}
	c.conns = nil
	for _, h := range s.tb.Hosts() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = s.clients[h].Remove(ctx, c.name)
		cancel()
	}
}

// finish ends the workload, removes every container and takes the end
// snapshot once the agents have had a moment to tidy up.
func (s *soak) finish() {
	if s.cur != nil {
		s.retire(s.cur)
		s.cur = nil
	}
	for _, h := range s.tb.Hosts() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		l, _ := s.clients[h].List(ctx)
		for _, c := range l {
			s.res.Verdicts = append(s.res.Verdicts, fmt.Sprintf("container %s still on %s (%s) at the end: removed", c.Name, h, c.State))
			_ = s.clients[h].Remove(ctx, c.Name)
		}
		cancel()
	}
	time.Sleep(2 * time.Second)
	s.res.HostEnd = s.hostSnapshot()
	s.res.Procs = append(s.res.Procs, s.procSamples(s.res.Migrations+1)...)
}

// leftAfterDown lists what of this testbed remains on the machine once
// it is down: namespaces, cgroups, pins, runtime and tmpfs dirs.
func (s *soak) leftAfterDown() []string {
	var left []string
	h := s.hostSnapshot()
	left = append(left, h.Netns...)
	left = append(left, h.Cgroups...)
	left = append(left, h.Mounts...)
	left = append(left, h.BPFPins...)
	left = append(left, h.RunFiles...)
	left = append(left, h.ShmFiles...)
	left = append(left, h.CRIU...)
	for _, g := range []string{s.tb.Dir(), s.tb.PinPath(), "/dev/shm/containerflow/" + s.o.Prefix + "-*"} {
		m, _ := filepath.Glob(g)
		left = append(left, m...)
	}
	return left
}

// phaseAt names the step of the sequence the migration was in at t, from
// the record's timestamps.
func phaseAt(res *agent.MigrationResult, t time.Time) string {
	if res == nil || res.Record.MigrationStartNs == 0 {
		return "unknown (no timing record: the request failed without one)"
	}
	r, ns := res.Record, t.UnixNano()
	if ns < r.MigrationStartNs {
		return "before the request was accepted"
	}
	steps := []struct {
		name string
		end  int64
	}{
		{"prepare", r.PrepareDoneNs}, {"quiesce", r.CheckpointStartNs}, {"checkpoint (frozen)", r.CheckpointDoneNs},
		{"transfer", r.TransferDoneNs}, {"restore", r.RestoreDoneNs}, {"go-live", r.ReadyNs}, {"commit and cleanup", r.MigrationEndNs},
	}
	for _, st := range steps {
		if st.end == 0 {
			return st.name + " (the sequence stopped in it)"
		}
		if ns < st.end {
			return st.name
		}
	}
	return "after the sequence ended"
}

// explain says whether a dropped connection was unavoidable given the
// outcome and the fault, and why.
func explain(outcome string, f *Fault) (bool, string) {
	if outcome == OutcomeRolledBack && f != nil && f.Fired && f.Kind == FaultCRIUKillDump && f.SocketsInRepair {
		return true, "CRIU was killed holding the container's sockets in TCP repair mode: it holds the tasks by ptrace (it thaws their cgroup once it has them), so they run the moment it dies, before the agent can take the sockets out of repair; a read then fails with EPERM, and a program that gives up on the connection closes it — silently, in repair mode — so its client is reset (docs/soak.md, finding 11)"
	}
	if outcome != OutcomeLost {
		return false, "the container survived (" + outcome + "): its connections should have too"
	}
	if f == nil || !f.Fired {
		return false, "container lost without a fault"
	}
	switch f.Kind {
	case FaultCRIUKillDump:
		return true, "CRIU killed during the dump while its parasite code ran inside the tasks takes them down with it (they trap with no tracer left), and no complete image exists to restore: the container is lost"
	case FaultAgentKillSource:
		return true, "the source agent, which drives the sequence and its rollback, died in the middle: its CRIU died with it, and a dump cut while its parasite ran in the tasks takes them down (the restarted agent recovers every other case: agent/recover.go)"
	case FaultAgentKillDest:
		return true, "the destination agent died in the middle of its half of the sequence"
	case FaultCRIUKillRestore:
		if strings.HasPrefix(f.Phase, "go-live") || strings.HasPrefix(f.Phase, "commit") {
			return true, "CRIU killed after the destination went live: the source copy was no longer the one clients talked to"
		}
	case FaultImageCorrupt:
		if f.Target == "destination" {
			return true, "an image corrupted on the destination's disk after the stream verified it: no checksum sees it, CRIU restores what it reads"
		}
	}
	return false, "the fault (" + f.Kind + ", " + f.Phase + ") should have rolled back with the container kept on the source"
}

// dumpLogRe finds the CRIU log a failed dump's error points to.
var dumpLogRe = regexp.MustCompile(`\(see (\S+/dump\.log)\)`)

// dumpHadSocketsInRepair says whether the failed dump whose error is
// migErr had put TCP sockets in repair mode, from CRIU's log (kept by the
// agent for its last failed migrations; read at once, before it goes).
func dumpHadSocketsInRepair(migErr string) bool {
	m := dumpLogRe.FindStringSubmatch(migErr)
	if m == nil {
		return false
	}
	b, err := os.ReadFile(m[1])
	return err == nil && bytes.Contains(b, []byte("Turning repair on"))
}

// copyLogs copies the logs under dir (*.log, migration-logs) to dst.
func copyLogs(dir, dst string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if !strings.HasSuffix(path, ".log") && !strings.Contains(path, "/migration-logs/") {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		to := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o644)
	})
}

func msSince(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
