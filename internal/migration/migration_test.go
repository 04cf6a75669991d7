package migration

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// fake plays source, destination, transfer and switch at once, recording
// every call in order and failing the one step it is told to.
type fake struct {
	calls     []string
	fail      string // the call that fails
	failAlso  string // and a second one
	running   bool   // the source's container runs (Running's answer)
	killed    bool   // a failing Checkpoint also killed the container
	switched  bool   // the destination steers inside its restore
	badSwitch bool   // ... and then its restore fails
}

var errInjected = errors.New("injected")

func (f *fake) call(name string) error {
	f.calls = append(f.calls, name)
	if name == f.fail || name == f.failAlso {
		return errInjected
	}
	return nil
}

// Source.
func (f *fake) Prepare(context.Context) error { return f.call("src.prepare") }
func (f *fake) Quiesce(context.Context) error { return f.call("quiesce") }
func (f *fake) Freeze(context.Context) error  { return f.call("freeze") }
func (f *fake) Checkpoint(context.Context, string) (int64, error) {
	if err := f.call("checkpoint"); err != nil {
		f.running = !f.killed
		return 0, err
	}
	f.running = false
	return 1234, nil
}
func (f *fake) Thaw(context.Context) error   { return f.call("thaw") }
func (f *fake) Running(context.Context) bool { f.calls = append(f.calls, "running?"); return f.running }
func (f *fake) Resume(context.Context) error { return f.call("resume") }
func (f *fake) Handoff(context.Context) (int, error) {
	return 3, f.call("handoff")
}
func (f *fake) Finish(context.Context) error { return f.call("src.finish") }
func (f *fake) Settle(context.Context) error { return f.call("settle") }
func (f *fake) RestoreLocal(context.Context, string) error {
	if err := f.call("restore-local"); err != nil {
		return err
	}
	f.running = true
	return nil
}

// destPart is the fake as a Destination (Prepare clashes with Source's).
type destPart struct{ *fake }

func (d destPart) Prepare(context.Context) error { return d.call("dst.prepare") }
func (d destPart) Open(context.Context, string) (Transfer, error) {
	if err := d.call("open"); err != nil {
		return nil, err
	}
	return d, nil
}
func (d destPart) Commit(context.Context) error { return d.call("commit") }
func (d destPart) Settle(context.Context) error { return d.call("dst.settle") }
func (d destPart) Abort(context.Context) error  { return d.call("abort") }
func (d destPart) Cancel()                      { d.calls = append(d.calls, "cancel") }
func (d destPart) Finish(context.Context) (DestReport, error) {
	rep := DestReport{Bytes: 1234, Restore: 5 * time.Millisecond, Switched: d.switched}
	if d.badSwitch {
		d.calls = append(d.calls, "restore")
		return rep, errInjected
	}
	return rep, d.call("restore")
}

type switchPart struct{ *fake }

func (s switchPart) Steer(context.Context) error { return s.call("steer") }
func (s switchPart) Back(context.Context) error  { return s.call("steer-back") }

func TestRunStepByStep(t *testing.T) {
	const (
		head    = "dst.prepare src.prepare quiesce freeze open checkpoint restore"
		success = head + " steer commit handoff dst.settle settle src.finish"
	)
	cases := []struct {
		name      string
		f         fake
		status    string
		calls     string
		errSays   string
		sameAsErr bool // the error is ErrRolledBack
	}{
		{name: "success, source steers", f: fake{}, status: StatusSuccess, calls: success},
		{name: "success, destination steers in its restore", f: fake{switched: true}, status: StatusSuccess,
			calls: head + " commit handoff dst.settle settle src.finish"},
		{name: "destination prepare fails", f: fake{fail: "dst.prepare"}, status: StatusRolledBack,
			calls: "dst.prepare abort", errSays: "prepare", sameAsErr: true},
		{name: "source prepare fails", f: fake{fail: "src.prepare"}, status: StatusRolledBack,
			calls: "dst.prepare src.prepare abort", errSays: "prepare", sameAsErr: true},
		{name: "quiesce fails", f: fake{fail: "quiesce"}, status: StatusRolledBack,
			calls: "dst.prepare src.prepare quiesce resume abort", errSays: "quiesce", sameAsErr: true},
		{name: "freeze fails", f: fake{fail: "freeze"}, status: StatusRolledBack,
			calls: "dst.prepare src.prepare quiesce freeze thaw resume abort", errSays: "freeze", sameAsErr: true},
		{name: "image stream cannot open", f: fake{fail: "open"}, status: StatusRolledBack,
			calls: "dst.prepare src.prepare quiesce freeze open thaw resume abort", errSays: "image stream", sameAsErr: true},
		{name: "checkpoint fails, container alive", f: fake{fail: "checkpoint"}, status: StatusRolledBack,
			calls: "dst.prepare src.prepare quiesce freeze open checkpoint cancel thaw abort running? resume", errSays: "checkpoint", sameAsErr: true},
		{name: "checkpoint fails and killed the container", f: fake{fail: "checkpoint", killed: true}, status: StatusFailed,
			calls: "dst.prepare src.prepare quiesce freeze open checkpoint cancel thaw abort running?", errSays: "no longer running"},
		{name: "restore fails", f: fake{fail: "restore"}, status: StatusRolledBack,
			calls: head + " restore-local abort resume", errSays: "transfer/restore", sameAsErr: true},
		{name: "restore fails after the destination took the address", f: fake{switched: true, badSwitch: true}, status: StatusRolledBack,
			calls: head + " steer-back restore-local abort resume", errSays: "transfer/restore", sameAsErr: true},
		{name: "restore fails after the address moved and the switch refuses to go back: the source copy is kept", f: fake{switched: true, badSwitch: true, fail: "steer-back"}, status: StatusRolledBack,
			calls: head + " steer-back restore-local abort resume", errSays: "could not be pointed back", sameAsErr: true},
		{name: "switch refuses", f: fake{fail: "steer"}, status: StatusRolledBack,
			calls: head + " steer restore-local abort resume", errSays: "switch update", sameAsErr: true},
		{name: "rollback fails too", f: fake{fail: "restore", failAlso: "restore-local"}, status: StatusFailed,
			calls: head + " restore-local abort", errSays: "rollback"},
		{name: "commit fails after the move: reported, not rolled back", f: fake{fail: "commit"}, status: StatusSuccess,
			calls: success, errSays: "commit"},
		{name: "handoff fails after the move", f: fake{fail: "handoff"}, status: StatusSuccess,
			calls: success, errSays: "handoff"},
		{name: "source cleanup fails after the move", f: fake{fail: "src.finish"}, status: StatusSuccess,
			calls: success, errSays: "cleanup"},
		{name: "post-copy interrupted after the move: container lost", f: fake{fail: "dst.settle"}, status: StatusFailed,
			calls: success, errSays: "lost on both hosts"},
		{name: "source page server ends badly after the destination has everything", f: fake{fail: "settle"}, status: StatusSuccess,
			calls: success, errSays: "page server"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := c.f
			p := Plan{Container: "web", From: "hostA", To: "hostB", Engine: "direct", ImagesDir: "/x",
				Source: &f, Dest: destPart{&f}, Switch: switchPart{&f}}
			rec, err := Run(context.Background(), p)
			if got := strings.Join(f.calls, " "); got != c.calls {
				t.Errorf("calls:\n got  %s\n want %s", got, c.calls)
			}
			if rec.Status != c.status {
				t.Errorf("status %q, want %q (err %v)", rec.Status, c.status, err)
			}
			if c.errSays == "" && err != nil {
				t.Errorf("unexpected error %v", err)
			}
			if c.errSays != "" && (err == nil || !strings.Contains(err.Error(), c.errSays) || rec.Error != err.Error()) {
				t.Errorf("error %v (record %q), want one saying %q", err, rec.Error, c.errSays)
			}
			if errors.Is(err, ErrRolledBack) != c.sameAsErr {
				t.Errorf("errors.Is(err, ErrRolledBack) = %v, want %v", !c.sameAsErr, c.sameAsErr)
			}
			if rec.Engine != "direct" || rec.Container != "web" || rec.MigrationEndNs < rec.MigrationStartNs {
				t.Errorf("record header: %+v", rec)
			}
			if c.status == StatusSuccess {
				checkSuccessRecord(t, rec, f.switched)
			}
		})
	}
}

func checkSuccessRecord(t *testing.T, rec *Record, switched bool) {
	t.Helper()
	want := SwitchedBySource
	if switched {
		want = SwitchedByDestination
	}
	if rec.SwitchedBy != want {
		t.Errorf("switched_by %q, want %q", rec.SwitchedBy, want)
	}
	if rec.CheckpointB != 1234 || rec.HandoffFrames != 3 || rec.RestoreMs != 5 {
		t.Errorf("record: size %d, handoff %d, restore %v", rec.CheckpointB, rec.HandoffFrames, rec.RestoreMs)
	}
	// The phases are in order on the record's clock.
	seq := []int64{rec.MigrationStartNs, rec.PrepareDoneNs, rec.QuiesceDoneNs, rec.CheckpointStartNs,
		rec.CheckpointDoneNs, rec.RestoreDoneNs, rec.SwitchDoneNs, rec.ReadyNs, rec.MigrationEndNs}
	for i := 1; i < len(seq); i++ {
		if seq[i] < seq[i-1] || seq[i] == 0 {
			t.Errorf("timestamp %d out of order: %v", i, seq)
		}
	}
	if rec.TimeToReadyMs < 0 || rec.TimeToReadyMs > rec.TotalMs {
		t.Errorf("time to ready %v of total %v", rec.TimeToReadyMs, rec.TotalMs)
	}
}

// A cancelled context ends the migration in a rollback, not a hang.
func TestRunWithCancelledContextRollsBack(t *testing.T) {
	f := &fake{}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p := Plan{Container: "web", From: "a", To: "b", Source: &ctxSource{f}, Dest: destPart{f}, Switch: switchPart{f}}
	rec, err := Run(ctx, p)
	if rec.Status != StatusRolledBack || !errors.Is(err, ErrRolledBack) {
		t.Fatalf("status %s, err %v", rec.Status, err)
	}
}

// ctxSource fails its first step when the context is done, as real steps do.
type ctxSource struct{ *fake }

func (s *ctxSource) Prepare(ctx context.Context) error {
	s.calls = append(s.calls, "src.prepare")
	return ctx.Err()
}

// A destination that stops answering while the container is frozen costs
// a rollback after FrozenTimeout, not an open-ended outage.
func TestSilentDestinationRollsBackAtTheFrozenTimeout(t *testing.T) {
	f := &fake{}
	p := Plan{Container: "web", From: "a", To: "b", Source: f, Dest: silentDest{destPart{f}}, Switch: switchPart{f},
		FrozenTimeout: 50 * time.Millisecond}
	start := time.Now()
	rec, err := Run(context.Background(), p)
	if rec.Status != StatusRolledBack || !errors.Is(err, ErrRolledBack) {
		t.Fatalf("status %s, err %v", rec.Status, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the rollback came after %v", took)
	}
}

// silentDest's transfer never answers until its request's context ends,
// as an image stream over a link that drops everything.
type silentDest struct{ destPart }

func (d silentDest) Open(ctx context.Context, dir string) (Transfer, error) {
	if _, err := d.destPart.Open(ctx, dir); err != nil {
		return nil, err
	}
	return silentTransfer{d.destPart, ctx}, nil
}

type silentTransfer struct {
	destPart
	ctx context.Context
}

func (t silentTransfer) Finish(context.Context) (DestReport, error) {
	<-t.ctx.Done()
	return DestReport{}, t.ctx.Err()
}
