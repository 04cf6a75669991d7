package migratebench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerflow/containerflow/internal/agent"
	"github.com/containerflow/containerflow/internal/migration"
	"github.com/containerflow/containerflow/internal/runtime"
	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/workload/quic"
	"github.com/containerflow/containerflow/internal/workload/stream"
)

// round runs one set of containers (one per engine, same memory size)
// with their migrations and references interleaved.
type round struct {
	o       Options
	tb      *testbed.Testbed
	clients map[string]*agent.Client
	ctrs    []*container
	seq     *int
	mode    string // the request's migration mode
}

// event is one migration or reference of a container, with the window in
// which the clients' silences count for it.
type event struct {
	migration  *PerMigration
	ref        *runtime.Reference
	start, end time.Time
}

func (r *round) run(ctx context.Context) ([]Row, error) {
	o := r.o
	defer r.stop()
	for _, c := range r.ctrs {
		if _, err := r.clients[testbed.HostA].Run(ctx, agent.ContainerSpec{Name: c.name, IP: c.ip, Image: c.image, Args: c.args(o)}); err != nil {
			return nil, fmt.Errorf("start workload %s: %w", c.name, err)
		}
		if err := r.connect(c); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(o.Progress, "%d containers x %d connections streaming every %v in each direction; warming up\n", len(r.ctrs), o.Connections, o.Interval)
	sleep(ctx, time.Second)
	// A reference every refEvery migrations of each container.
	refEvery := 0
	if o.References > 0 {
		refEvery = max(1, o.Migrations/o.References)
	}
	refs := 0
	for n := 1; n <= o.Migrations && ctx.Err() == nil; n++ {
		for _, c := range r.ctrs {
			if err := r.migrate(ctx, c, n); err != nil {
				return nil, err
			}
		}
		if refEvery > 0 && refs < o.References && (n-1)%refEvery == 0 {
			refs++
			r.reference(ctx)
		}
	}
	for _, c := range r.ctrs {
		if c.mib > 0 && c.workload == workloadStream {
			c.verified = r.verifyMemory(ctx, c)
		}
	}
	for _, c := range r.ctrs {
		for _, cn := range c.conns {
			c.final = append(c.final, cn.Stop(context.Background(), 5*time.Second))
		}
		c.conns = nil
		if c.quic != nil {
			c.quicFinal = c.quic.Stop(context.Background(), 5*time.Second)
			c.quic = nil
		}
	}
	rows := make([]Row, 0, len(r.ctrs))
	var ref Row
	for _, c := range r.ctrs {
		row := r.measure(c)
		if row.ReferenceMs.N > 0 {
			ref = row
		}
		rows = append(rows, row)
	}
	for i := range rows {
		rows[i].ReferenceMs, rows[i].ReferenceDowntimeMs = ref.ReferenceMs, ref.ReferenceDowntimeMs
		rows[i].setReadyOverReference()
	}
	return rows, nil
}

func (r *round) connect(c *container) error {
	if c.workload == workloadQUIC {
		// quic-go resends its Initial until the server listens, within
		// Dial's own timeout.
		cl, err := quic.Dial(context.Background(), quic.ClientConfig{
			Addr: fmt.Sprintf("%s:%d", c.ip, quicPort), Conns: r.o.Connections, Interval: r.o.Interval, MinGap: 20 * time.Millisecond, Datagrams: true,
			ListenPacket: func() (pc net.PacketConn, err error) {
				err = r.tb.Do(testbed.Client, func() error { pc, err = net.ListenPacket("udp4", ":0"); return err })
				return pc, err
			},
		})
		if err != nil {
			return fmt.Errorf("connect to workload %s: %w", c.name, err)
		}
		c.quic = cl
		return nil
	}
	addr := fmt.Sprintf("%s:%d", c.ip, port)
	for range r.o.Connections {
		// A container with much memory to fill takes a while to listen.
		deadline := time.Now().Add(30 * time.Second)
		for {
			nc, err := r.tb.Dial(testbed.Client, "tcp4", addr, time.Second)
			if err == nil {
				c.conns = append(c.conns, stream.Start(nc, r.o.Interval, 20*time.Millisecond))
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("connect to workload %s: %w", c.name, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// stop ends what is still running: connections and containers.
func (r *round) stop() {
	for _, c := range r.ctrs {
		for _, cn := range c.conns {
			cn.Stop(context.Background(), 0)
		}
		if c.quic != nil {
			c.quic.Stop(context.Background(), 0)
		}
		_ = r.clients[c.where].Remove(context.Background(), c.name)
	}
}

func (r *round) migrate(ctx context.Context, c *container, n int) error {
	o := r.o
	to := testbed.HostB
	if c.where == testbed.HostB {
		to = testbed.HostA
	}
	req := o.Request
	req.To, req.Engine, req.Mode = to, c.engine, r.mode
	// On, off, off, on, on, off, ...: each half of a comparison gets as
	// many A->B as B->A migrations (plain alternation gave one half all
	// of one direction).
	half := (n/2)%2 == 1
	if o.CompareHandoff {
		req.NoHandoff = half
	}
	if o.ComparePriority {
		req.NoPriority = half
	}
	if o.CompareTLS && half {
		req.Transport = agent.TransportPlain
	}
	ev := event{start: time.Now()}
	res, err := r.clients[c.where].Migrate(ctx, c.name, req)
	ev.end = time.Now()
	pm := &PerMigration{N: n, Container: c.name, Engine: c.engine, MemoryMiB: c.mib, From: c.where, To: to,
		Handoff: !req.NoHandoff, Priority: !req.NoPriority, TLS: req.Transport != agent.TransportPlain}
	if res != nil {
		pm.Record = res.Record
		pm.Status = res.Record.Status
	}
	if err != nil {
		pm.Error = err.Error()
		if pm.Status == "" {
			pm.Status = migration.StatusFailed
		}
	} else {
		c.where = to
	}
	if o.RecordsDir != "" {
		*r.seq++
		rec := pm.Record
		if rec.Status == "" {
			rec = migration.Record{Container: c.name, SourceNode: pm.From, TargetNode: to, Engine: c.engine, Status: migration.StatusFailed, Error: pm.Error}
		}
		if err := os.MkdirAll(o.RecordsDir, 0o755); err != nil {
			return err
		}
		if err := rec.WriteFiles(filepath.Join(o.RecordsDir, fmt.Sprintf("migration_timing_%d", *r.seq))); err != nil {
			return err
		}
	}
	ev.migration = pm
	c.events = append(c.events, ev)
	sleep(ctx, o.Settle)
	fmt.Fprintf(o.Progress, "%s migration %d/%d %s -> %s: %s, time to ready %.1f ms\n", c.name, n, o.Migrations, pm.From, to, pm.Status, pm.Record.TimeToReadyMs)
	return nil
}

// verifyMemory asks the workload to check every page of its ballast
// (SIGUSR1) now that no page is in flight, and reads the verdict from its
// log on the host it ended on. A corrupted page makes the workload exit,
// which the connections report as drops.
func (r *round) verifyMemory(ctx context.Context, c *container) bool {
	cl := r.clients[c.where]
	before, _ := cl.Logs(ctx, c.name)
	if err := cl.Signal(ctx, c.name, int(syscall.SIGUSR1)); err != nil {
		fmt.Fprintf(r.o.Progress, "%s: cannot ask for a memory check: %v\n", c.name, err)
		return false
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := cl.Logs(ctx, c.name); err == nil && len(b) > len(before) {
			if bytes.Contains(b[len(before):], []byte(stream.BallastVerified)) {
				fmt.Fprintf(r.o.Progress, "%s: %d MiB of memory verified page by page on %s\n", c.name, c.mib, c.where)
				return true
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Fprintf(r.o.Progress, "%s: memory not verified on %s\n", c.name, c.where)
	return false
}

// reference takes a bare checkpoint/restore of the round's direct-engine
// container where it is. It stands for every container of the round (same
// workload, same memory): taken on the runc engine's container it would
// leave runc a container it does not know (the restore is CRIU's).
func (r *round) reference(ctx context.Context) {
	var c *container
	for _, x := range r.ctrs {
		if x.engine == agent.EngineDirect && x.workload == workloadStream {
			c = x
			break
		}
	}
	if c == nil {
		fmt.Fprintf(r.o.Progress, "no bare CRIU reference: it needs a direct-engine container in the round\n")
		return
	}
	ev := event{start: time.Now()}
	ref, err := r.clients[c.where].Reference(ctx, c.name)
	ev.end = time.Now()
	if err != nil {
		fmt.Fprintf(r.o.Progress, "%s reference on %s failed: %v\n", c.name, c.where, err)
		return
	}
	ev.ref = &ref
	c.events = append(c.events, ev)
	sleep(ctx, r.o.Settle)
	fmt.Fprintf(r.o.Progress, "%s bare CRIU on %s: dump %.1f ms, restore %.1f ms\n", c.name, c.where, msOf(ref.Dump), msOf(ref.Restore))
}

// measure turns a container's events and its connections' records into
// its row. An event's window runs from its request to the next event (or
// the settle time after its answer, for the last), so a connection still
// silent after the answer counts, and no gap counts twice.
func (r *round) measure(c *container) Row {
	row := Row{Engine: c.engine, MemoryMiB: c.mib, Mode: r.mode, MemoryVerified: c.verified, Image: c.image != "", Workload: c.workload}
	var down, echo, srv, ready, total, refs, refDown, ckpt []float64
	var downHO, downNoHO, downPrio, downNoPrio []float64
	var downTLS, downPlain, tputTLS, tputPlain []float64
	phases := map[string][]float64{}
	for i, ev := range c.events {
		to := ev.end.Add(r.o.Settle)
		if i+1 < len(c.events) {
			to = c.events[i+1].start
		}
		var worst, e, s time.Duration
		for _, st := range c.final {
			worst = max(worst, st.MaxGapIn(0, ev.start, to))
			e = max(e, st.MaxGapIn(stream.KindEcho, ev.start, to))
			s = max(s, st.MaxGapIn(stream.KindServer, ev.start, to))
		}
		// QUIC: the answers to the client's requests stand for the
		// echoes, the download for the server's own stream.
		for _, st := range c.quicFinal {
			e = max(e, st.MaxGapIn(quic.GapResponse, ev.start, to))
			s = max(s, st.MaxGapIn(quic.GapChunk, ev.start, to))
			worst = max(worst, e, s)
			if ev.migration != nil {
				row.QUICLostPackets += st.QUIC.LostIn(ev.start, to)
				row.QUICPTOs += st.QUIC.PTOsIn(ev.start, to)
			}
		}
		if ev.ref != nil {
			refs = append(refs, msOf(ev.ref.Dump+ev.ref.Restore))
			refDown = append(refDown, msOf(worst))
			continue
		}
		pm := ev.migration
		pm.DowntimeMs, pm.EchoGapMs, pm.StreamGapMs = msOf(worst), msOf(e), msOf(s)
		row.Migrations++
		row.PerMigration = append(row.PerMigration, *pm)
		if pm.Status != migration.StatusSuccess {
			row.Failed++
			continue
		}
		down = append(down, pm.DowntimeMs)
		if pm.Handoff {
			downHO = append(downHO, pm.DowntimeMs)
		} else {
			downNoHO = append(downNoHO, pm.DowntimeMs)
		}
		if pm.Priority {
			downPrio = append(downPrio, pm.DowntimeMs)
		} else {
			downNoPrio = append(downNoPrio, pm.DowntimeMs)
		}
		if pm.TLS {
			downTLS, tputTLS = append(downTLS, pm.DowntimeMs), append(tputTLS, throughput(pm.Record))
		} else {
			downPlain, tputPlain = append(downPlain, pm.DowntimeMs), append(tputPlain, throughput(pm.Record))
		}
		echo, srv = append(echo, pm.EchoGapMs), append(srv, pm.StreamGapMs)
		rec := pm.Record
		if rec.Mode != "" && row.Mode != rec.Mode {
			row.Mode = rec.Mode // what "auto" chose
		}
		ready, total = append(ready, rec.TimeToReadyMs), append(total, rec.TotalMs)
		if rec.ImageStageB > 0 {
			row.ImageStageMs = append(row.ImageStageMs, rec.ImageStageMs)
			row.ImageStageBytes += rec.ImageStageB
		}
		ckpt = append(ckpt, float64(rec.CheckpointB))
		for k, v := range map[string]float64{"prepare": rec.PrepareMs, "freeze": rec.FreezeMs, "checkpoint": rec.CheckpointMs,
			"transfer": rec.TransferMs, "restore": rec.RestoreMs, "switch": rec.SwitchMs, "resume": rec.ResumeMs, "total": rec.TotalMs} {
			phases[k] = append(phases[k], v)
		}
	}
	for i, st := range c.final {
		if st.Dropped {
			row.ConnectionDrops++
			row.DropErrors = append(row.DropErrors, fmt.Sprintf("%s connection %d: %s", c.name, i, st.Err))
		}
		row.BytesLost += (st.Echo.Lost + st.Server.Lost + st.Unanswered()) * stream.RecordSize
		row.BytesDuplicated += (st.Echo.Duplicated + st.Server.Duplicated) * stream.RecordSize
		row.RecordsReorder += st.Echo.Reordered + st.Server.Reordered
		row.BytesSent += st.Sent * stream.RecordSize
	}
	for i, st := range c.quicFinal {
		if st.Drops > 0 || st.QUIC.Handshakes != 1 {
			row.ConnectionDrops++
			if st.QUIC.Handshakes > 1 {
				row.NewHandshakes += int(st.QUIC.Handshakes - 1)
			}
			row.DropErrors = append(row.DropErrors, fmt.Sprintf("%s connection %d: %d drops, %d handshakes %v", c.name, i, st.Drops, st.QUIC.Handshakes, st.Errors))
		}
		row.RequestsSent += st.Requests
		row.RequestsLost += st.Unanswered() + st.Download.Lost
		row.RequestsDuplicated += st.Responses.Duplicated + st.Download.Duplicated
		row.DatagramsLost += st.Datagrams.Lost
		if err := st.Clean(); err != nil {
			row.DropErrors = append(row.DropErrors, fmt.Sprintf("%s connection %d: %v", c.name, i, err))
		}
	}
	row.setDists(down, echo, srv, ready, total, refs, refDown, ckpt, phases)
	if r.o.CompareHandoff {
		row.DowntimeHandoffMs, row.DowntimeNoHandoffMs = pair(downHO, downNoHO)
	}
	if r.o.ComparePriority {
		row.DowntimePriorityMs, row.DowntimeNoPriorityMs = pair(downPrio, downNoPrio)
	}
	if r.o.CompareTLS {
		row.DowntimeTLSMs, row.DowntimePlainMs = pair(downTLS, downPlain)
		row.ThroughputTLSMBps, row.ThroughputPlainMBps = pair(tputTLS, tputPlain)
	}
	return row
}
