package migration

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Source is the host the container leaves.
type Source interface {
	// Prepare readies what the checkpoint needs before the container is
	// frozen (CRIU started and waiting). Undone by Finish or by the
	// rollback steps.
	Prepare(ctx context.Context) error
	// Quiesce asks the application to stop producing (a signal) and waits,
	// bounded, for its TCP send queues to drain. A no-op when not asked for.
	Quiesce(ctx context.Context) error
	// Freeze stops every process of the container.
	Freeze(ctx context.Context) error
	// Checkpoint dumps the frozen container into dir and returns the
	// images' size. On success the container no longer runs and its
	// namespace stays locked.
	Checkpoint(ctx context.Context, dir string) (int64, error)
	// Thaw resumes the container after a failed checkpoint (CRIU leaves the
	// processes alive when a dump fails).
	Thaw(ctx context.Context) error
	// Running reports whether the container still runs here.
	Running(ctx context.Context) bool
	// RestoreLocal brings the container back from dir after a successful
	// checkpoint whose migration failed, and unlocks its namespace.
	RestoreLocal(ctx context.Context, dir string) error
	// Resume undoes Quiesce (the same signal again).
	Resume(ctx context.Context) error
	// Handoff runs as soon as the destination is live: the source hands
	// over what it still holds for the container (clients' frames caught
	// during the freeze, sent on to the destination) and says how many.
	Handoff(ctx context.Context) (int, error)
	// Settle waits until the source's part of the transfer has ended (in
	// post-copy, its page server). The destination's Settle says whether
	// the pages arrived; this one only releases what the source held.
	Settle(ctx context.Context) error
	// Finish removes the source copy once the destination owns it.
	Finish(ctx context.Context) error
}

// DestReport is what the destination measured itself.
type DestReport struct {
	Bytes int64 `json:"bytes"`
	// Stream is the whole receive, most of it while the source was still
	// writing the images.
	Stream     time.Duration `json:"stream_ns"`
	Restore    time.Duration `json:"restore_ns"`
	RestoredAt time.Time     `json:"restored_at"`
	// Switched says the destination pointed the switch at itself (and
	// removed its lock) from inside the restore, after CRIU had rebuilt
	// the container and before its first instruction ran; SwitchTook is
	// how long that took.
	Switched   bool          `json:"switched"`
	SwitchTook time.Duration `json:"switch_took_ns"`
}

// Destination is the host the container goes to.
type Destination interface {
	// Prepare pre-stages the namespace (same IP and MAC, locked), the
	// bundle and the restore (CRIU started and waiting).
	Prepare(ctx context.Context) error
	// Open starts streaming dir to the destination: what the checkpoint
	// writes there is sent while it is being written. Called right after
	// the freeze.
	Open(ctx context.Context, dir string) (Transfer, error)
	// Commit unlocks the destination and resumes the application there.
	Commit(ctx context.Context) error
	// Settle waits until the destination has everything: in post-copy,
	// until its last page has arrived. An error means the container is
	// lost.
	Settle(ctx context.Context) error
	// Abort discards everything the destination holds for this migration,
	// keeping it silent (locked) until it is gone.
	Abort(ctx context.Context) error
}

// Transfer is an image stream in progress.
type Transfer interface {
	// Finish sends what the checkpoint left, ends the stream, and waits
	// for the destination to verify it and restore the container.
	Finish(ctx context.Context) (DestReport, error)
	// Cancel cuts the stream (the checkpoint failed).
	Cancel()
}

// Switch points the container's address at the destination, or back.
type Switch interface {
	Steer(ctx context.Context) error
	Back(ctx context.Context) error
}

// Plan is one migration.
type Plan struct {
	Container string
	From, To  string
	Engine    string // recorded: "direct" or "runc"
	Mode      string // recorded: "stop-and-copy" or "post-copy"
	ImagesDir string // local directory for the images (tmpfs preferably)
	Source    Source
	Dest      Destination
	Switch    Switch
	Now       func() time.Time // the clock; time.Now if nil
	// FrozenTimeout bounds the image stream and the destination's restore,
	// from the freeze to the destination's answer (DefaultFrozenTimeout
	// if zero): a destination that stops answering — a link that drops
	// everything, a hung peer — must cost a rollback, not an open-ended
	// outage.
	FrozenTimeout time.Duration
	// PrepareTimeout bounds the destination's preparation, before the
	// freeze (DefaultPrepareTimeout if zero).
	PrepareTimeout time.Duration
}

// Defaults of Plan's bounds. A stop-and-copy of 512 MiB takes ~7 s here;
// images crossing a 50 Mbit/s link ~14 s for 80 MB.
const (
	DefaultFrozenTimeout  = 60 * time.Second
	DefaultPrepareTimeout = 2 * time.Minute
)

// Status values of a Record.
const (
	StatusSuccess    = "success"
	StatusRolledBack = "rolled_back" // failed, container back on the source
	StatusFailed     = "failed"      // failed and could not be rolled back
)

// Modes (Plan.Mode, Record.Mode).
const (
	ModeStopAndCopy = "stop-and-copy"
	ModePostCopy    = "post-copy"
)

// Who pointed the switch at the destination (Record.SwitchedBy).
const (
	SwitchedByDestination = "destination"
	SwitchedBySource      = "source"
)

// ErrRolledBack wraps the cause of a migration that failed and left the
// container running on the source.
var ErrRolledBack = errors.New("migration failed, container kept on the source")

// Run executes the plan. The returned record is complete in every case;
// the error says why a migration did not succeed.
func Run(ctx context.Context, p Plan) (*Record, error) {
	r := &run{p: p, now: p.Now}
	if r.now == nil {
		r.now = time.Now
	}
	r.rec = &Record{Container: p.Container, SourceNode: p.From, TargetNode: p.To, Engine: p.Engine, Mode: p.Mode}
	r.start = r.now()
	r.rec.MigrationStartNs = r.start.UnixNano()
	return r.run(ctx)
}

// run is one execution of a plan: the record being filled and what has
// been done so far, which decides how to undo it.
type run struct {
	p        Plan
	now      func() time.Time
	rec      *Record
	start    time.Time
	quiesced bool
}

func (r *run) mark(ns *int64) time.Time { t := r.now(); *ns = t.UnixNano(); return t }

func (r *run) finish(status string, err error) (*Record, error) {
	end := r.now()
	r.rec.MigrationEndNs = end.UnixNano()
	r.rec.TotalMs = ms(end.Sub(r.start))
	r.rec.Status = status
	if err != nil {
		r.rec.Error = err.Error()
	}
	return r.rec, err
}

// abortDest discards the destination with a context of its own: the
// caller's may be the reason we are rolling back.
func (r *run) abortDest() {
	actx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = r.p.Dest.Abort(actx)
}

func (r *run) resume() {
	if r.quiesced {
		_ = r.p.Source.Resume(context.Background())
	}
}

// giveUp rolls back a migration that failed before the checkpoint: the
// container still runs (or runs again once thawed) on the source.
func (r *run) giveUp(step string, err error, thaw bool) (*Record, error) {
	if thaw {
		_ = r.p.Source.Thaw(context.Background())
	}
	r.resume()
	r.abortDest()
	return r.finish(StatusRolledBack, fmt.Errorf("%w: %s: %v", ErrRolledBack, step, err))
}

// rollback brings the container back on the source from its own copy of
// the images, after a successful checkpoint. The source goes first: the
// destination is silent (locked) until discarded, and in post-copy its
// pages still come from the source, whose copy must be taken back before
// the destination lets go of them.
func (r *run) rollback(cause error) (*Record, error) {
	rb := r.now()
	rctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := r.p.Source.RestoreLocal(rctx, r.p.ImagesDir)
	r.abortDest()
	if err != nil {
		r.rec.RollbackMs = ms(r.now().Sub(rb))
		return r.finish(StatusFailed, fmt.Errorf("%v; rollback on %s failed too: %v", cause, r.p.From, err))
	}
	r.resume()
	r.rec.RollbackMs = ms(r.now().Sub(rb))
	return r.finish(StatusRolledBack, fmt.Errorf("%w: %v", ErrRolledBack, cause))
}

func (r *run) run(ctx context.Context) (*Record, error) {
	p, rec := r.p, r.rec
	pto := p.PrepareTimeout
	if pto <= 0 {
		pto = DefaultPrepareTimeout
	}
	pctx, pcancel := context.WithTimeout(ctx, pto)
	err := p.Dest.Prepare(pctx)
	pcancel()
	if err != nil {
		return r.giveUp("prepare "+p.To, err, false)
	}
	if err := p.Source.Prepare(ctx); err != nil {
		return r.giveUp("prepare "+p.From, err, false)
	}
	prepared := r.mark(&rec.PrepareDoneNs)
	rec.PrepareMs = ms(prepared.Sub(r.start))

	if err := p.Source.Quiesce(ctx); err != nil {
		r.quiesced = true // a signal may have gone out: send it again
		return r.giveUp("quiesce", err, false)
	}
	r.quiesced = true
	qdone := r.mark(&rec.QuiesceDoneNs)
	rec.QuiesceMs = ms(qdone.Sub(prepared))

	frozenAt := r.mark(&rec.CheckpointStartNs)
	if err := p.Source.Freeze(ctx); err != nil {
		return r.giveUp("freeze", err, true)
	}
	rec.FreezeMs = ms(r.now().Sub(frozenAt))
	fto := p.FrozenTimeout
	if fto <= 0 {
		fto = DefaultFrozenTimeout
	}
	// The stream's request lives in fctx: at its end the request is cut
	// and the destination's answer is an error, so the source rolls back.
	fctx, fcancel := context.WithTimeout(ctx, fto)
	defer fcancel()
	tr, err := p.Dest.Open(fctx, p.ImagesDir)
	if err != nil {
		return r.giveUp("open image stream to "+p.To, err, true)
	}
	size, err := p.Source.Checkpoint(ctx, p.ImagesDir)
	if err != nil {
		tr.Cancel()
		cerr := fmt.Errorf("checkpoint: %v", err)
		// CRIU resumes the tasks when a dump fails, but a dump can fail
		// after killing them (e.g. CRIU itself killed late): then the
		// images are incomplete and nothing can bring the container back.
		_ = p.Source.Thaw(context.Background())
		r.abortDest()
		if !p.Source.Running(context.Background()) {
			return r.finish(StatusFailed, fmt.Errorf("%v; the container is no longer running on %s", cerr, p.From))
		}
		r.resume()
		return r.finish(StatusRolledBack, fmt.Errorf("%w: %v", ErrRolledBack, cerr))
	}
	rec.CheckpointB = size
	ckptDone := r.mark(&rec.CheckpointDoneNs)
	rec.CheckpointMs = ms(ckptDone.Sub(frozenAt))

	rep, err := tr.Finish(fctx)
	if err != nil && rep.Switched {
		// The destination switched and then its restore failed: point the
		// switch back before the source takes the container up again.
		if berr := p.Switch.Back(context.Background()); berr != nil {
			// The source copy is whole: keep it (reachable again once the
			// switch is fixed) rather than lose the container.
			return r.rollback(fmt.Errorf("restore on %s failed after it took the address (%v), and the switch could not be pointed back: %v", p.To, err, berr))
		}
	}
	if err != nil {
		return r.rollback(fmt.Errorf("transfer/restore on %s: %v", p.To, err))
	}
	restored := r.mark(&rec.RestoreDoneNs)
	rec.RestoreMs = ms(rep.Restore)
	// What is not restore after the checkpoint is the part of the
	// transfer the dump did not hide (and the request's own overhead).
	rec.TransferDoneNs = restored.Add(-rep.Restore).UnixNano()
	rec.TransferMs = max(ms(restored.Sub(ckptDone))-rec.RestoreMs, 0)
	rec.StreamMs = ms(rep.Stream)

	switched, err := r.steer(ctx, rep, restored)
	if err != nil {
		return r.rollback(fmt.Errorf("switch update: %v", err))
	}

	// From here on the destination owns the container: errors are
	// reported, not rolled back.
	var after []error
	if err := p.Dest.Commit(context.Background()); err != nil {
		after = append(after, fmt.Errorf("commit on %s: %w", p.To, err))
	}
	ready := r.mark(&rec.ReadyNs)
	rec.ResumeMs = ms(ready.Sub(switched))
	rec.TimeToReadyMs = ms(ready.Sub(frozenAt))
	n, err := p.Source.Handoff(context.Background())
	rec.HandoffFrames = int64(n)
	rec.HandoffMs = ms(r.now().Sub(ready))
	if err != nil {
		after = append(after, fmt.Errorf("handoff from %s: %w", p.From, err))
	}
	// In post-copy the container depends on the source until the
	// destination says its last page has arrived.
	derr := p.Dest.Settle(context.Background())
	serr := p.Source.Settle(context.Background())
	if p.Mode == ModePostCopy {
		rec.PostCopyMs = ms(r.now().Sub(ready))
	}
	if derr != nil {
		_ = p.Source.Finish(context.Background())
		return r.finish(StatusFailed, fmt.Errorf("post-copy from %s interrupted, the container is lost on both hosts: %v", p.From, derr))
	}
	if serr != nil {
		after = append(after, fmt.Errorf("page server on %s: %w", p.From, serr))
	}
	if err := p.Source.Finish(context.Background()); err != nil {
		after = append(after, fmt.Errorf("cleanup on %s: %w", p.From, err))
	}
	rec.CleanupMs = ms(r.now().Sub(ready))
	return r.finish(StatusSuccess, errors.Join(after...))
}

// steer records the switch update the destination made inside its
// restore, or makes it from here when the destination could not.
func (r *run) steer(ctx context.Context, rep DestReport, restored time.Time) (time.Time, error) {
	rec := r.rec
	if rep.Switched {
		// Done by the destination inside the restore; its time is part of
		// restore_ms and reported on its own too.
		rec.SwitchedBy = SwitchedByDestination
		rec.SwitchDoneNs = restored.UnixNano()
		rec.SwitchMs = ms(rep.SwitchTook)
		return restored, nil
	}
	if err := r.p.Switch.Steer(ctx); err != nil {
		return time.Time{}, err
	}
	switched := r.mark(&rec.SwitchDoneNs)
	rec.SwitchedBy = SwitchedBySource
	rec.SwitchMs = ms(switched.Sub(restored))
	return switched, nil
}
