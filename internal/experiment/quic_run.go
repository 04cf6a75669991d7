package experiment

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/containerflow/containerflow/internal/agent"
	"github.com/containerflow/containerflow/internal/migration"
	"github.com/containerflow/containerflow/internal/results"
	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/workload/quic"
	"github.com/containerflow/containerflow/internal/workload/stream"
)

const (
	quicContainer = "quic"
	quicPort      = 4433
	// quicMinGap: silences shorter than this are not kept. Three request
	// intervals: scheduling noise on a busy 2-core host stays below it,
	// a freeze does not.
	quicMinGap = 30 * time.Millisecond
	// quicMode pins stop-and-copy: with a large --memory-mib the agent's
	// "auto" would switch to post-copy, whose transfer happens after the
	// restore, and the bw-* conditions would no longer compare the same
	// thing.
	quicMode = "stop-and-copy"
)

// QUICResult is what a QUIC run produced.
type QUICResult struct {
	Dir     string
	Summary QUICSummary
	Plots   []string
}

// RunQUIC performs the QUIC server-migration experiment: one testbed, one
// QUIC server container, and the conditions one after the other, each
// with fresh client connections and its own link impairments. The
// testbed is removed before RunQUIC returns, whatever happens; on ctx's
// end (Ctrl-C) the conditions stop and what was measured is written.
func RunQUIC(ctx context.Context, o QUICOptions) (res *QUICResult, err error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o.quicDefaults()
	started := time.Now()
	dir, err := makeRunDir(o.OutDir, started)
	if err != nil {
		return nil, err
	}
	res = &QUICResult{Dir: dir}
	say := func(format string, a ...any) { fmt.Fprintf(o.Progress, format+"\n", a...) }
	say("results: %s", dir)

	binDir, staged, err := stageBinary(o.Binary)
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(binDir)
	o.Binary = staged

	var names []string
	for _, c := range o.Conditions {
		names = append(names, c.Name)
	}
	sum := &res.Summary
	*sum = QUICSummary{Workload: WorkloadQUIC, Run: filepath.Base(dir), Started: started, Params: QUICParams{
		Conditions: names, Connections: o.Connections, Migrations: o.Migrations,
		SteadyStateS: o.SteadyState.Seconds(), PostMigrationS: o.PostMigration.Seconds(),
		IntervalMs: ms(o.Interval), MinGapMs: ms(quicMinGap), MemoryMiB: o.MemoryMiB, MgmtRate: o.MgmtRateText,
		Seed: o.Seed, Mode: quicMode, Prefix: o.Prefix}}
	if o.Delay > 0 {
		sum.Params.Delay, sum.Params.Jitter = o.Delay.String(), o.Jitter.String()
	}

	runErr := func() (err error) {
		say("testbed %s: up (switch, hostA, hostB, client; one agent per host)", o.Prefix)
		tb, err := testbed.Up(testbed.Config{Prefix: o.Prefix, AgentBinary: o.Binary})
		if err != nil {
			return fmt.Errorf("testbed up: %w", err)
		}
		defer func() {
			for _, h := range tb.Hosts() {
				_ = copyFile(filepath.Join(tb.HostDir(h), "agent.log"), filepath.Join(dir, "agent_"+h+".log"))
			}
			say("testbed %s: down", o.Prefix)
			if derr := testbed.Down(o.Prefix); derr != nil {
				err = errors.Join(err, fmt.Errorf("testbed down: %w", derr))
			}
		}()
		q := &quicRunner{o: o, tb: tb, dir: dir, say: say, where: testbed.HostA}
		return q.run(ctx, sum)
	}()

	sum.Finished, sum.Interrupted = time.Now(), ctx.Err() != nil
	if sum.Interrupted {
		runErr = errors.Join(runErr, fmt.Errorf("interrupted after %d of %d conditions: %w", len(sum.Conditions), len(o.Conditions), context.Cause(ctx)))
	}
	if runErr != nil {
		sum.Error = runErr.Error()
	}
	if err := sum.Write(filepath.Join(dir, results.SummaryFile)); err != nil {
		return res, errors.Join(runErr, err)
	}
	if !o.NoPlots && len(sum.Conditions) > 0 {
		say("plots: %s", dir)
		names, perr := plotQUIC(dir, sum)
		res.Plots = names
		if perr != nil {
			runErr = errors.Join(runErr, fmt.Errorf("plots: %w", perr))
		}
	}
	if err := writeQUICReport(filepath.Join(dir, "report.md"), sum, res.Plots); err != nil {
		runErr = errors.Join(runErr, err)
	}
	return res, runErr
}

type quicRunner struct {
	o      QUICOptions
	tb     *testbed.Testbed
	dir    string
	say    func(string, ...any)
	agents map[string]*agent.Client
	where  string // the host running the server
}

func (q *quicRunner) addr() string {
	return net.JoinHostPort(ContainerIP.String(), strconv.Itoa(quicPort))
}

// listenPacket opens each client connection's UDP socket in the client
// node: the clients are goroutines of this process, their sockets are
// the client node's.
func (q *quicRunner) listenPacket() (c net.PacketConn, err error) {
	err = q.tb.Do(testbed.Client, func() error { c, err = net.ListenPacket("udp4", ":0"); return err })
	return c, err
}

func (q *quicRunner) run(ctx context.Context, sum *QUICSummary) error {
	o := q.o
	tok, err := q.tb.Token()
	if err != nil {
		return err
	}
	q.agents = map[string]*agent.Client{}
	for _, h := range q.tb.Hosts() {
		q.agents[h] = agent.NewClient("unix://"+q.tb.AgentSocket(h), agent.ClientOptions{Token: tok})
	}
	args := []string{"/opt/cflow/bin/" + filepath.Base(o.Binary), "workload", "quic-server",
		"--listen", fmt.Sprintf(":%d", quicPort), "--interval", o.Interval.String(), "--memory-mib", strconv.Itoa(o.MemoryMiB)}
	if _, err := q.agents[testbed.HostA].Run(ctx, agent.ContainerSpec{Name: quicContainer, IP: ContainerIP, Args: args}); err != nil {
		return fmt.Errorf("start the QUIC server container on hostA: %w", err)
	}
	defer q.saveServerLog()
	// quic-go retransmits its Initial until the server is up; one short
	// connection proves the whole path (switch, container, TLS).
	if err := waitOK(ctx, 30*time.Second, func(c context.Context) error {
		cl, err := quic.Dial(c, quic.ClientConfig{Addr: q.addr(), Conns: 1, Interval: o.Interval, ListenPacket: q.listenPacket})
		if err != nil {
			return err
		}
		cl.Stop(c, 0)
		return nil
	}); err != nil {
		return fmt.Errorf("QUIC server at %s never answered from the client node: %w", q.addr(), err)
	}
	q.say("workload: quic-server on hostA at %s (%d MiB of self-checking memory)", q.addr(), o.MemoryMiB)

	var errs []error
	for i, c := range o.Conditions {
		if ctx.Err() != nil {
			break
		}
		q.say("condition %d/%d %s: %s", i+1, len(o.Conditions), c.Name, c.Describe(&q.o))
		cs, err := q.condition(ctx, c)
		sum.Conditions = append(sum.Conditions, cs)
		if err != nil {
			q.say("  %s: %v", c.Name, err)
			errs = append(errs, fmt.Errorf("condition %s: %w", c.Name, err))
		}
	}
	if o.MemoryMiB > 0 {
		ok, err := q.verifyMemory()
		if err != nil {
			q.say("memory check: %v", err)
		} else {
			sum.MemoryVerified = &ok
			q.say("memory check after the last migration: every page intact: %v", ok)
			if !ok {
				errs = append(errs, errors.New("the server's memory check failed"))
			}
		}
	}
	return errors.Join(errs...)
}

// condition runs one condition with fresh client connections.
func (q *quicRunner) condition(ctx context.Context, c Condition) (cs ConditionSummary, err error) {
	o := q.o
	cs = ConditionSummary{Condition: c, Description: c.Describe(&q.o), Dir: c.Dir()}
	defer func() {
		if err != nil {
			cs.Error = err.Error()
		}
	}()
	cdir := filepath.Join(q.dir, c.Dir())
	if err := os.MkdirAll(cdir, 0o755); err != nil {
		return cs, err
	}
	// Every condition starts from an unimpaired testbed and leaves one.
	defer func() {
		if cerr := q.tb.ClearImpairments(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("clear impairments: %w", cerr))
		}
	}()
	if cs.Impairments, err = q.impair(c); err != nil {
		return cs, err
	}
	for _, l := range slices.Sorted(maps.Keys(cs.Impairments)) {
		q.say("  link %s impaired, each way: %s", l, cs.Impairments[l])
	}

	rec := &recorder{}
	t0 := time.Now()
	cs.StartUnixMs = t0.UnixMilli()
	cl, err := quic.Dial(ctx, quic.ClientConfig{Addr: q.addr(), Conns: o.Connections, Interval: o.Interval, MinGap: quicMinGap,
		ListenPacket: q.listenPacket, OnResponse: rec.add})
	if err != nil {
		return cs, fmt.Errorf("QUIC clients: %w", err)
	}
	stopped := false
	defer func() {
		if !stopped {
			cl.Stop(context.Background(), 0)
		}
	}()
	q.say("  %d QUIC connections from the client node, a request every %v on each", o.Connections, o.Interval)
	sleep(ctx, o.SteadyState)
	var outs []results.Outcome
	if c.Migrate {
		outs = q.migrate(ctx, c, cdir, cl)
	}
	// Long enough for QUIC to deliver whatever the last migration or the
	// lossy path left outstanding: a request still unanswered after it
	// is lost.
	stats := cl.Stop(context.Background(), 5*time.Second)
	stopped = true
	t1 := time.Now()
	cs.EndUnixMs, cs.DurationS = t1.UnixMilli(), t1.Sub(t0).Seconds()

	rs := rec.sorted()
	summarizeCondition(&cs, stats, rs, outs, t1)
	ferr := errors.Join(
		writeJSON(filepath.Join(cdir, ConnectionsFile), stats),
		writeResponses(filepath.Join(cdir, ResponsesFile), t0, rs),
		writePerSecond(filepath.Join(cdir, PerSecondFile), t0, perSecond(t0, t1, rs, cs.PerMigration)))
	q.say("  %s: %d/%d connections survived, %d new handshakes; requests %d sent, %d answered, %d lost, %d duplicated; response p50 %.2f ms, p99 %.2f ms",
		c.Name, cs.Survived, cs.Connections, cs.NewHandshakes, cs.RequestsSent, cs.RequestsAnswered, cs.RequestsLost, cs.RequestsDuplicated, cs.RespP50Ms, cs.RespP99Ms)
	if cs.InterruptionMs.N > 0 {
		q.say("  %s: interruption p50 %.0f ms, p99 %.0f ms, max %.0f ms; transfer mean %.0f ms, %.1f MB on the wire",
			c.Name, cs.InterruptionMs.P50, cs.InterruptionMs.P99, cs.InterruptionMs.Max, cs.TransferMs.Mean, cs.TransferWireBytes.Mean/1e6)
	}
	for _, p := range cs.Problems {
		q.say("  %s: %s", c.Name, p)
	}
	return cs, ferr
}

// impair applies the condition's impairments and returns them as applied.
func (q *quicRunner) impair(c Condition) (map[string]string, error) {
	o := q.o
	want := map[string]testbed.Impairment{}
	if o.Delay > 0 || c.Loss > 0 {
		want[testbed.Client+"-"+testbed.LinkData] = testbed.Impairment{Delay: o.Delay, Jitter: o.Jitter, Loss: c.Loss, Seed: o.Seed}
	}
	if c.Limited {
		for _, h := range []string{testbed.HostA, testbed.HostB} {
			want[h+"-"+testbed.LinkMgmt] = testbed.Impairment{Rate: o.MgmtRate, Seed: o.Seed}
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	for _, l := range slices.Sorted(maps.Keys(want)) {
		if err := q.tb.Impair(l, want[l]); err != nil {
			return nil, fmt.Errorf("impair %s: %w", l, err)
		}
	}
	applied := map[string]string{}
	ims, _ := q.tb.Impairments()
	for _, li := range ims {
		if _, ok := want[li.Link]; ok {
			applied[li.Link] = li.Impairment.String() + " (" + li.Mechanism + ")"
		}
	}
	return applied, nil
}

// migrate performs a condition's migrations, alternating hosts (from
// wherever the previous condition left the server), and writes each
// timing file as soon as it has it.
func (q *quicRunner) migrate(ctx context.Context, c Condition, cdir string, cl *quic.Client) []results.Outcome {
	o := q.o
	var outs []results.Outcome
	for n := 1; n <= o.Migrations && ctx.Err() == nil; n++ {
		from := q.where
		to := testbed.HostB
		if from == testbed.HostB {
			to = testbed.HostA
		}
		out := results.Outcome{N: n, From: from, To: to, Start: time.Now()}
		mctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		mr, err := q.agents[from].Migrate(mctx, quicContainer, agent.MigrateRequest{To: to, Compress: c.Compress, Mode: quicMode})
		cancel()
		out.End, out.Err = time.Now(), err
		if mr != nil {
			rec := mr.Record
			out.Record = &rec
		}
		if err == nil && out.Record != nil && out.Record.Status == migration.StatusSuccess {
			q.where = to
		}
		rec := out.Record
		if rec == nil {
			rec = &migration.Record{Container: quicContainer, SourceNode: from, TargetNode: to, Status: migration.StatusFailed,
				MigrationStartNs: out.Start.UnixNano(), MigrationEndNs: out.End.UnixNano(), TotalMs: ms(out.End.Sub(out.Start))}
			if err != nil {
				rec.Error = err.Error()
			}
		}
		if werr := rec.WriteFiles(results.TimingBase(cdir, n)); werr != nil {
			q.say("  migration %d: cannot write its timing file: %v", n, werr)
		}
		outs = append(outs, out)
		line := describe(rec, err)
		if rec.Status == migration.StatusSuccess && err == nil {
			line += fmt.Sprintf("; image %.1f MB, %.1f MB on the wire (%s)", float64(rec.CheckpointB)/1e6, float64(rec.TransferWireB)/1e6, compressName(rec.Compress))
		}
		q.say("  migration %d/%d %s -> %s: %s", n, o.Migrations, from, to, line)
		if rec.Status != migration.StatusSuccess {
			keepLogs(cdir, n, rec.Error, q.say)
		}
		sleep(ctx, o.PostMigration)
		var gap time.Duration
		for _, s := range cl.Stats() {
			gap = max(gap, s.MaxGapIn("", out.Start, time.Now()))
		}
		q.say("    clients: longest silence %.0f ms", ms(gap))
	}
	return outs
}

func compressName(c string) string {
	if c == "" {
		return "uncompressed"
	}
	return c
}

// verifyMemory asks the server to check every page of its ballast (after
// the last migration, when none is in flight) and waits for its answer
// in the log.
func (q *quicRunner) verifyMemory() (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := q.agents[q.where]
	count := func() (ok, bad int, err error) {
		b, err := a.Logs(ctx, quicContainer)
		return bytes.Count(b, []byte(stream.BallastVerified)), bytes.Count(b, []byte("memory check failed")), err
	}
	before, _, err := count()
	if err != nil {
		return false, err
	}
	if err := a.Signal(ctx, quicContainer, int(syscall.SIGUSR1)); err != nil {
		return false, err
	}
	for ctx.Err() == nil {
		ok, bad, err := count()
		switch {
		case err != nil:
			return false, err
		case bad > 0:
			return false, nil
		case ok > before:
			return true, nil
		}
		sleep(ctx, 200*time.Millisecond)
	}
	return false, errors.New("the server did not report its memory check within 30 s")
}

func (q *quicRunner) saveServerLog() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, h := range append([]string{q.where}, q.tb.Hosts()...) {
		if b, err := q.agents[h].Logs(ctx, quicContainer); err == nil {
			_ = os.WriteFile(filepath.Join(q.dir, "server.log"), b, 0o644)
			return
		}
	}
}
