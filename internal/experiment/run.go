package experiment

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/containerflow/containerflow/internal/agent"
	"github.com/containerflow/containerflow/internal/loadgen"
	"github.com/containerflow/containerflow/internal/migration"
	"github.com/containerflow/containerflow/internal/nsrun"
	"github.com/containerflow/containerflow/internal/plot"
	"github.com/containerflow/containerflow/internal/results"
	"github.com/containerflow/containerflow/internal/testbed"
)

// ContainerIP is where the workload lives: a fixed address on the
// testbed's data network, as the seed's server had.
var ContainerIP = netip.MustParseAddr("198.18.0.2")

const (
	containerName = "ws"
	wsPort        = 8080
	metricsPort   = 8081
	loadgenPort   = 9090
	quiesceSignal = int(syscall.SIGUSR2)
)

// Result is what a run produced.
type Result struct {
	Dir     string
	Summary results.Summary
	Plots   []string // plot names written (each as .png, .svg, .pdf)
}

// Run performs the experiment. The testbed is removed before Run returns,
// whatever happens. When ctx ends early (Ctrl-C), the migrations stop,
// what was measured so far is still written and plotted, and the error
// says the run was interrupted.
func Run(ctx context.Context, o Options) (res *Result, err error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o.defaults()
	started := time.Now()
	dir, err := makeRunDir(o.OutDir, started)
	if err != nil {
		return nil, err
	}
	res = &Result{Dir: dir}
	say := func(format string, a ...any) { fmt.Fprintf(o.Progress, format+"\n", a...) }
	say("results: %s", dir)

	binDir, staged, err := stageBinary(o.Binary)
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(binDir)
	o.Binary = staged

	say("testbed %s: up (switch, hostA, hostB, client; one agent per host)", o.Prefix)
	tb, err := testbed.Up(testbed.Config{Prefix: o.Prefix, AgentBinary: o.Binary})
	if err != nil {
		return res, fmt.Errorf("testbed up: %w", err)
	}
	defer func() {
		// Agent logs live in the testbed's state directory, which Down
		// removes: keep them with the results.
		for _, h := range tb.Hosts() {
			_ = copyFile(filepath.Join(tb.HostDir(h), "agent.log"), filepath.Join(dir, "agent_"+h+".log"))
		}
		say("testbed %s: down", o.Prefix)
		if derr := testbed.Down(o.Prefix); derr != nil {
			err = errors.Join(err, fmt.Errorf("testbed down: %w", derr))
		}
	}()
	impaired := map[string]string{}
	for _, link := range slices.Sorted(maps.Keys(o.Impair)) {
		im := o.Impair[link]
		if im.Seed == 0 {
			im.Seed = 1 // a run is repeatable unless asked otherwise
		}
		if err := tb.Impair(link, im); err != nil {
			return res, fmt.Errorf("impair %s: %w", link, err)
		}
		ims, _ := tb.Impairments()
		for _, li := range ims {
			if li.Link == link {
				impaired[link] = li.Impairment.String() + " (" + li.Mechanism + ")"
			}
		}
		say("link %s impaired, each way: %s", link, impaired[link])
	}

	r := &runner{o: o, tb: tb, dir: dir, say: say, state: &runState{host: testbed.HostA}, impaired: impaired}
	return res, r.run(ctx, res, started)
}

type runner struct {
	o      Options
	tb     *testbed.Testbed
	dir    string
	say    func(string, ...any)
	state  *runState
	agents map[string]*agent.Client
	hc     *http.Client
	lg     *loadgenProc
	// impaired: link -> its impairment as applied, for the summary.
	impaired map[string]string
}

func (r *runner) serverURL(path string) string {
	return fmt.Sprintf("http://%s:%d%s", ContainerIP, metricsPort, path)
}

func (r *runner) loadgenURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", loadgenPort, path)
}

func (r *runner) run(ctx context.Context, res *Result, started time.Time) error {
	o := r.o
	tok, err := r.tb.Token()
	if err != nil {
		return err
	}
	r.agents = map[string]*agent.Client{}
	for _, h := range r.tb.Hosts() {
		r.agents[h] = agent.NewClient("unix://"+r.tb.AgentSocket(h), agent.ClientOptions{Token: tok})
	}
	clientNs, err := r.tb.Netns(testbed.Client)
	if err != nil {
		return err
	}
	r.hc = nsHTTPClient(clientNs, o.Scrape*9/10)

	// 1. The workload server, run by the container from the cflow binary
	// the agents bind-mount at /opt/cflow/bin.
	args := []string{"/opt/cflow/bin/" + filepath.Base(o.Binary), "workload", "ws-server",
		"--listen", fmt.Sprintf(":%d", wsPort), "--metrics", fmt.Sprintf(":%d", metricsPort), "--fps", strconv.Itoa(o.FPS)}
	if _, err := r.agents[testbed.HostA].Run(ctx, agent.ContainerSpec{Name: containerName, IP: ContainerIP, Args: args}); err != nil {
		return fmt.Errorf("start the workload container on hostA: %w", err)
	}
	if err := waitOK(ctx, 20*time.Second, func(c context.Context) error {
		var v map[string]any
		return getJSON(c, r.hc, r.serverURL("/health"), &v)
	}); err != nil {
		return fmt.Errorf("workload server at %s never answered from the client node: %w", ContainerIP, err)
	}
	r.say("workload: ws-server on hostA at %s (ws :%d, metrics :%d, %d fps)", ContainerIP, wsPort, metricsPort, o.FPS)

	// 2. The load generator, a process in the client node.
	r.lg, err = startLoadgen(clientNs, o, r.dir, fmt.Sprintf("ws://%s:%d/ws", ContainerIP, wsPort))
	if err != nil {
		return err
	}
	defer r.lg.stop()
	if err := waitOK(ctx, 30*time.Second, func(c context.Context) error {
		var rep loadgen.Report
		if err := getJSON(c, r.hc, r.loadgenURL("/report"), &rep); err != nil {
			return err
		}
		if t := rep.Totals(); !t.Connected {
			return fmt.Errorf("%d/%d connections up", upCount(rep), len(rep.Connections))
		}
		return nil
	}); err != nil {
		return fmt.Errorf("load generator did not connect (see %s): %w", filepath.Join(r.dir, "loadgen.log"), err)
	}
	r.say("load generator: %d connections from the client node (%s)", o.Connections, filepath.Join(r.dir, "loadgen.log"))

	// 3. The collector.
	w, err := results.CreateCSV(filepath.Join(r.dir, results.MetricsFile))
	if err != nil {
		return err
	}
	defer w.Close()
	col := &collector{hc: r.hc, serverURL: r.serverURL("/metrics"), loadgenURL: r.loadgenURL("/metrics"), csv: w,
		state: r.state, start: time.Now(), interval: o.Scrape, onRow: r.progressRow}
	cctx, stopCollector := context.WithCancel(context.Background())
	collectorDone := make(chan struct{})
	go func() { defer close(collectorDone); col.run(cctx) }()
	stopCollecting := func() {
		stopCollector()
		<-collectorDone
	}
	defer stopCollecting()

	// 4. Steady state, then the migrations.
	r.say("steady state: %v", o.SteadyState)
	sleep(ctx, o.SteadyState)
	outs := r.migrate(ctx)

	// 5. Collect. From here on the run's own context may be cancelled
	// (Ctrl-C): finishing the files takes fresh, bounded contexts.
	interrupted := ctx.Err() != nil
	stopCollecting()
	rows, csvErr := col.result()
	fctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rep loadgen.Report
	repErr := getJSON(fctx, r.hc, r.loadgenURL("/report"), &rep)
	if repErr == nil {
		repErr = writeJSON(filepath.Join(r.dir, "loadgen_report.json"), rep)
	}
	r.lg.stop()
	r.saveServerLog(fctx)

	rtt := make([]float64, 0, len(rows))
	for _, row := range rows {
		if row.Loadgen != nil {
			rtt = append(rtt, float64(row.Loadgen.P50RttMs))
		} else {
			rtt = append(rtt, math.NaN())
		}
	}
	sum := results.Compute(results.Params{SteadyStateS: o.SteadyState.Seconds(), PostMigrationS: o.PostMigration.Seconds(),
		Migrations: o.Migrations, Connections: o.Connections, FPS: o.FPS, Quiesce: o.Quiesce, Prefix: o.Prefix, Impairments: r.impaired},
		outs, rep, o.PostMigration, rtt)
	sum.Run, sum.Started, sum.Finished, sum.Interrupted = filepath.Base(r.dir), started, time.Now(), interrupted
	runErr := errors.Join(csvErr, repErr)
	if interrupted {
		runErr = errors.Join(runErr, fmt.Errorf("interrupted after %d of %d migrations: %w", len(outs), o.Migrations, context.Cause(ctx)))
	}
	if runErr != nil {
		sum.Error = runErr.Error()
	}
	res.Summary = sum
	if err := sum.Write(filepath.Join(r.dir, results.SummaryFile)); err != nil {
		return errors.Join(runErr, err)
	}
	if !o.NoPlots {
		r.say("plots: %s", r.dir)
		names, perr := plot.All(r.dir)
		res.Plots = names
		if perr != nil {
			runErr = errors.Join(runErr, fmt.Errorf("plots: %w", perr))
		}
	}
	if err := writeReport(filepath.Join(r.dir, "report.md"), &sum, res.Plots); err != nil {
		runErr = errors.Join(runErr, err)
	}
	return runErr
}

// stageBinary copies the cflow binary into a private directory and
// returns that directory (the caller removes it) and the copy. The agents
// bind-mount their binary's directory into every container
// (/opt/cflow/bin): a binary in /tmp or a build directory would expose
// the whole, busy directory to the containers, and CRIU has to dump every
// mount a container sees.
func stageBinary(bin string) (dir, staged string, err error) {
	dir, err = os.MkdirTemp("", "cflow-experiment-bin-")
	if err != nil {
		return "", "", fmt.Errorf("stage the cflow binary: %w", err)
	}
	staged = filepath.Join(dir, "cflow")
	if err := copyFile(bin, staged); err != nil {
		os.RemoveAll(dir)
		return "", "", fmt.Errorf("stage the cflow binary: %w", err)
	}
	if err := os.Chmod(staged, 0o755); err != nil {
		os.RemoveAll(dir)
		return "", "", fmt.Errorf("stage the cflow binary: %w", err)
	}
	return dir, staged, nil
}

// migrate performs the migrations, alternating hosts, and writes each
// timing file as soon as it has it (an interrupted run keeps them).
func (r *runner) migrate(ctx context.Context) []results.Outcome {
	o := r.o
	var outs []results.Outcome
	where := testbed.HostA
	req := agent.MigrateRequest{}
	if o.Quiesce {
		req.QuiesceSignal, req.DrainTimeoutMs = quiesceSignal, 2000
	}
	for n := 1; n <= o.Migrations && ctx.Err() == nil; n++ {
		to := testbed.HostB
		if where == testbed.HostB {
			to = testbed.HostA
		}
		req.To = to
		r.state.begin()
		out := results.Outcome{N: n, From: where, To: to, Start: time.Now()}
		mctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		mr, err := r.agents[where].Migrate(mctx, containerName, req)
		cancel()
		out.End, out.Err = time.Now(), err
		if mr != nil {
			rec := mr.Record
			out.Record = &rec
		}
		if err == nil && out.Record != nil && out.Record.Status == migration.StatusSuccess {
			where = to
		}
		r.state.end(where)
		rec := out.Record
		if rec == nil {
			// No record came back (the agent could not be reached): the
			// timing file still says the migration was attempted and failed.
			rec = &migration.Record{Container: containerName, SourceNode: out.From, TargetNode: to, Status: migration.StatusFailed,
				MigrationStartNs: out.Start.UnixNano(), MigrationEndNs: out.End.UnixNano(), TotalMs: float64(out.End.Sub(out.Start).Microseconds()) / 1000}
			if err != nil {
				rec.Error = err.Error()
			}
		}
		if werr := rec.WriteFiles(results.TimingBase(r.dir, n)); werr != nil {
			r.say("migration %d: cannot write its timing file: %v", n, werr)
		}
		outs = append(outs, out)
		r.say("migration %d/%d %s -> %s: %s", n, o.Migrations, out.From, to, describe(rec, err))
		if rec.Status != migration.StatusSuccess {
			r.keepLogs(n, rec.Error)
		}
		sleep(ctx, o.PostMigration)
		r.reportGap(ctx, out)
	}
	return outs
}

// reportGap prints what the clients saw of one migration.
func (r *runner) reportGap(ctx context.Context, out results.Outcome) {
	var rep loadgen.Report
	if getJSON(ctx, r.hc, r.loadgenURL("/report"), &rep) != nil {
		return
	}
	t := rep.Totals()
	gap := "no frame gap"
	if ms, ok := rep.MaxGapEndingIn(out.Start, time.Now()); ok {
		gap = fmt.Sprintf("longest frame gap %.0f ms", ms)
	}
	r.say("    clients: %s; so far %d frames, %d lost, %d duplicated, %d drops", gap, t.Received, t.Lost, t.Duplicated, t.Drops)
}

func describe(rec *migration.Record, err error) string {
	if rec.Status != migration.StatusSuccess || err != nil {
		msg := rec.Error
		if msg == "" && err != nil {
			msg = err.Error()
		}
		return fmt.Sprintf("%s (%s)", rec.Status, msg)
	}
	return fmt.Sprintf("success: checkpoint %.0f ms, transfer %.0f ms, restore %.0f ms, switch %.1f ms; time to ready %.0f ms",
		rec.CheckpointMs, rec.TransferMs, rec.RestoreMs, rec.SwitchMs, rec.TimeToReadyMs)
}

// progressRow prints a status line every 5 rows.
func (r *runner) progressRow(row results.Row) {
	sec := int(math.Round(row.Elapsed.Seconds()))
	if sec%5 != 0 && !row.MigrationEvent {
		return
	}
	srv := "server -"
	if row.Server != nil {
		srv = fmt.Sprintf("server %d clients, %.1f%% CPU", row.Server.ConnectedClients, row.Server.CPUPercent)
	}
	lg := "loadgen -"
	if l := row.Loadgen; l != nil {
		rtt := "no echoes"
		if l.P50RttMs.Valid() {
			rtt = fmt.Sprintf("RTT p50 %.2f ms p99 %.2f ms", float64(l.P50RttMs), float64(l.P99RttMs))
		}
		lg = fmt.Sprintf("%d/%d connected, %s, %.0f frames/s, %d lost, %d drops", l.ConnectedClients, l.TotalClients, rtt, l.FramesPerSecond, l.Lost, l.ConnectionDrops)
	}
	r.say("  t=%4ds  on %s  | %s | %s", sec, row.Host, srv, lg)
}

func (r *runner) saveServerLog(ctx context.Context) {
	for _, h := range r.tb.Hosts() {
		if b, err := r.agents[h].Logs(ctx, containerName); err == nil {
			_ = os.WriteFile(filepath.Join(r.dir, "server.log"), b, 0o644)
			return
		}
	}
}

func upCount(rep loadgen.Report) int {
	n := 0
	for _, c := range rep.Connections {
		if c.Connected {
			n++
		}
	}
	return n
}

// waitOK retries fn until it succeeds, ctx ends or d passes.
func waitOK(ctx context.Context, d time.Duration, fn func(context.Context) error) error {
	deadline := time.Now().Add(d)
	for {
		c, cancel := context.WithTimeout(ctx, time.Second)
		err := fn(c)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return err
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// loadgenProc is the load generator process in the client node.
type loadgenProc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startLoadgen(ns string, o Options, dir, target string) (*loadgenProc, error) {
	logf, err := os.Create(filepath.Join(dir, "loadgen.log"))
	if err != nil {
		return nil, fmt.Errorf("load generator log: %w", err)
	}
	defer logf.Close()
	// Keep gaps from one and a half frame intervals up: anything a client
	// would notice as a late frame.
	gapMin := max(time.Duration(1.5*float64(time.Second)/float64(o.FPS)), 10*time.Millisecond)
	cmd := exec.Command(o.Binary, "loadgen", "--server", target, "--connections", strconv.Itoa(o.Connections),
		"--metrics", fmt.Sprintf(":%d", loadgenPort), "--gap-min", gapMin.String())
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own session: a Ctrl-C in the terminal reaches this process,
	// which then collects the load generator's report before stopping it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := nsrun.Start(ns, cmd); err != nil {
		return nil, fmt.Errorf("start the load generator in the client node: %w", err)
	}
	p := &loadgenProc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

// stop ends the load generator (SIGTERM, then SIGKILL); idempotent.
func (p *loadgenProc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// logPath finds the log files an error names (CRIU's dump.log and
// restore.log live in the agents' image directories, which the testbed's
// removal takes with it).
var logPath = regexp.MustCompile(`/[^\s()'"]+\.log`)

// keepLogs copies the logs a failed migration's error points to into the
// run directory as migration_N_<name>.
func (r *runner) keepLogs(n int, msg string) { keepLogs(r.dir, n, msg, r.say) }

func keepLogs(dir string, n int, msg string, say func(string, ...any)) {
	seen := map[string]bool{}
	for _, p := range logPath.FindAllString(msg, -1) {
		if seen[p] {
			continue
		}
		seen[p] = true
		dst := filepath.Join(dir, fmt.Sprintf("migration_%d_%s", n, filepath.Base(p)))
		if err := copyFile(p, dst); err == nil {
			say("    kept %s", dst)
		}
	}
}
