package migration

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Source is the host the container leaves.
type Source interface {
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
	// Finish removes the source copy once the destination owns it.
	Finish(ctx context.Context) error
}

// DestReport is what the destination measured itself.
type DestReport struct {
	Bytes      int64         `json:"bytes"`
	Transfer   time.Duration `json:"transfer_ns"`
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
	// Prepare pre-stages the namespace (same IP and MAC, locked) and the
	// bundle.
	Prepare(ctx context.Context) error
	// TransferAndRestore streams dir to the destination, which verifies it
	// and restores the container into the locked namespace.
	TransferAndRestore(ctx context.Context, dir string) (DestReport, error)
	// Commit unlocks the destination and resumes the application there.
	Commit(ctx context.Context) error
	// Abort discards everything the destination holds for this migration,
	// keeping it silent (locked) until it is gone.
	Abort(ctx context.Context) error
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
	ImagesDir string // local directory for the images (tmpfs preferably)
	Source    Source
	Dest      Destination
	Switch    Switch
	Now       func() time.Time // the clock; time.Now if nil
}

// Status values of a Record.
const (
	StatusSuccess    = "success"
	StatusRolledBack = "rolled_back" // failed, container back on the source
	StatusFailed     = "failed"      // failed and could not be rolled back
)

// ErrRolledBack wraps the cause of a migration that failed and left the
// container running on the source.
var ErrRolledBack = errors.New("migration failed, container kept on the source")

// Run executes the plan. The returned record is complete in every case;
// the error says why a migration did not succeed.
func Run(ctx context.Context, p Plan) (*Record, error) {
	now := p.Now
	if now == nil {
		now = time.Now
	}
	rec := &Record{Container: p.Container, SourceNode: p.From, TargetNode: p.To}
	start := now()
	rec.MigrationStartNs = start.UnixNano()
	mark := func(ns *int64) time.Time { t := now(); *ns = t.UnixNano(); return t }
	finish := func(status string, err error) (*Record, error) {
		end := now()
		rec.MigrationEndNs = end.UnixNano()
		rec.TotalMs = ms(end.Sub(start))
		rec.Status = status
		if err != nil {
			rec.Error = err.Error()
		}
		return rec, err
	}
	// The destination is discarded with a context of its own: the caller's
	// may be the reason we are rolling back.
	abortDest := func() error {
		actx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return p.Dest.Abort(actx)
	}

	if err := p.Dest.Prepare(ctx); err != nil {
		_ = abortDest()
		return finish(StatusRolledBack, fmt.Errorf("%w: prepare %s: %v", ErrRolledBack, p.To, err))
	}
	prepared := mark(&rec.PrepareDoneNs)
	rec.PrepareMs = ms(prepared.Sub(start))

	quiesced := false
	if err := p.Source.Quiesce(ctx); err != nil {
		_ = p.Source.Resume(context.Background())
		_ = abortDest()
		return finish(StatusRolledBack, fmt.Errorf("%w: quiesce: %v", ErrRolledBack, err))
	}
	quiesced = true
	qdone := mark(&rec.QuiesceDoneNs)
	rec.QuiesceMs = ms(qdone.Sub(prepared))

	frozenAt := mark(&rec.CheckpointStartNs)
	if err := p.Source.Freeze(ctx); err != nil {
		_ = p.Source.Thaw(context.Background())
		if quiesced {
			_ = p.Source.Resume(context.Background())
		}
		_ = abortDest()
		return finish(StatusRolledBack, fmt.Errorf("%w: freeze: %v", ErrRolledBack, err))
	}
	rec.FreezeMs = ms(now().Sub(frozenAt))
	size, err := p.Source.Checkpoint(ctx, p.ImagesDir)
	if err != nil {
		cerr := fmt.Errorf("checkpoint: %v", err)
		// CRIU resumes the tasks when a dump fails, but a dump can fail
		// after killing them (e.g. CRIU itself killed late): then the
		// images are incomplete and nothing can bring the container back.
		_ = p.Source.Thaw(context.Background())
		_ = abortDest()
		if !p.Source.Running(context.Background()) {
			return finish(StatusFailed, fmt.Errorf("%v; the container is no longer running on %s", cerr, p.From))
		}
		if quiesced {
			_ = p.Source.Resume(context.Background())
		}
		return finish(StatusRolledBack, fmt.Errorf("%w: %v", ErrRolledBack, cerr))
	}
	rec.CheckpointB = size
	ckptDone := mark(&rec.CheckpointDoneNs)
	rec.CheckpointMs = ms(ckptDone.Sub(frozenAt))

	rollback := func(cause error) (*Record, error) {
		rb := now()
		_ = abortDest()
		rctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := p.Source.RestoreLocal(rctx, p.ImagesDir); err != nil {
			rec.RollbackMs = ms(now().Sub(rb))
			return finish(StatusFailed, fmt.Errorf("%v; rollback on %s failed too: %v", cause, p.From, err))
		}
		if quiesced {
			_ = p.Source.Resume(rctx)
		}
		rec.RollbackMs = ms(now().Sub(rb))
		return finish(StatusRolledBack, fmt.Errorf("%w: %v", ErrRolledBack, cause))
	}

	rep, err := p.Dest.TransferAndRestore(ctx, p.ImagesDir)
	if err != nil && rep.Switched {
		// The destination switched and then its restore failed: point the
		// switch back before the source takes the container up again.
		if berr := p.Switch.Back(context.Background()); berr != nil {
			return finish(StatusFailed, fmt.Errorf("restore on %s failed after it took the address (%v), and the switch could not be pointed back: %v", p.To, err, berr))
		}
	}
	if err != nil {
		return rollback(fmt.Errorf("transfer/restore on %s: %v", p.To, err))
	}
	rec.TransferMs = ms(rep.Transfer)
	rec.RestoreMs = ms(rep.Restore)
	restored := now()
	rec.RestoreDoneNs = restored.UnixNano()
	// Split the wall time between transfer and restore as the destination
	// measured them; the remainder (request overhead) counts as transfer.
	rec.TransferDoneNs = restored.Add(-rep.Restore).UnixNano()
	if over := ms(restored.Sub(ckptDone)) - rec.TransferMs - rec.RestoreMs; over > 0 {
		rec.TransferMs += over
	}

	var switched time.Time
	if rep.Switched {
		// Done by the destination inside the restore; its time is part of
		// restore_ms and reported on its own too.
		switched = restored
		rec.SwitchedBy = "destination"
		rec.SwitchDoneNs = switched.UnixNano()
		rec.SwitchMs = ms(rep.SwitchTook)
	} else {
		if err := p.Switch.Steer(ctx); err != nil {
			return rollback(fmt.Errorf("switch update: %v", err))
		}
		switched = mark(&rec.SwitchDoneNs)
		rec.SwitchedBy = "source"
		rec.SwitchMs = ms(switched.Sub(restored))
	}

	// From here on the destination owns the container: errors are
	// reported, not rolled back.
	var after []error
	if err := p.Dest.Commit(context.Background()); err != nil {
		after = append(after, fmt.Errorf("commit on %s: %w", p.To, err))
	}
	ready := mark(&rec.ReadyNs)
	rec.ResumeMs = ms(ready.Sub(switched))
	rec.TimeToReadyMs = ms(ready.Sub(frozenAt))
	n, err := p.Source.Handoff(context.Background())
	rec.HandoffFrames = int64(n)
	rec.HandoffMs = ms(now().Sub(ready))
	if err != nil {
		after = append(after, fmt.Errorf("handoff from %s: %w", p.From, err))
	}
	if err := p.Source.Finish(context.Background()); err != nil {
		after = append(after, fmt.Errorf("cleanup on %s: %w", p.From, err))
	}
	rec.CleanupMs = ms(now().Sub(ready))
	if len(after) > 0 {
		return finish(StatusSuccess, errors.Join(after...))
	}
	return finish(StatusSuccess, nil)
}
