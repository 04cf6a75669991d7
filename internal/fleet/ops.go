package fleet

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containerflow/containerflow/internal/agent"
	"github.com/containerflow/containerflow/internal/controller"
	"github.com/containerflow/containerflow/internal/migration"
)

// begin records a new operation (kind, target, concurrency, steps and
// planner figures from o) and runs it in the background. Steps already
// ended (a container no host can take) keep their result and are not run.
func (m *Manager) begin(o Operation, spec *agent.ContainerSpec) (Operation, error) {
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Concurrency > MaxConcurrency {
		return Operation{}, fmt.Errorf("%w: concurrency %d: at most %d", controller.ErrInvalid, o.Concurrency, MaxConcurrency)
	}
	id, err := m.st.nextID()
	if err != nil {
		return Operation{}, err
	}
	op := &o
	op.ID, op.Status, op.Created, op.Total, op.Done = id, StatusPending, time.Now().UTC(), len(o.Steps), 0
	if op.Steps == nil {
		op.Steps = []Step{}
	}
	for _, s := range op.Steps {
		if s.Status != StatusPending {
			op.Done++
		}
	}
	ctx, cancel := context.WithCancel(m.ctx)
	m.mu.Lock()
	m.ops[id] = op
	m.cancels[id] = cancel
	err = m.save(op)
	snap := copyOp(op)
	m.mu.Unlock()
	if err != nil {
		cancel()
		return Operation{}, err
	}
	m.log.Info("operation", "id", id, "kind", op.Kind, "target", op.Target, "steps", len(op.Steps), "concurrency", op.Concurrency)
	m.wg.Add(1)
	go m.execute(ctx, op, spec)
	return snap, nil
}

// save writes an operation; with m.mu held.
func (m *Manager) save(op *Operation) error { return m.st.put(opsBucket, op.ID, op) }

// update changes an operation under the lock and writes it.
func (m *Manager) update(op *Operation, fn func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fn()
	if err := m.save(op); err != nil {
		m.log.Error("save operation", "id", op.ID, "err", err)
	}
}

func copyOp(op *Operation) Operation {
	c := *op
	c.Steps = append([]Step(nil), op.Steps...)
	return c
}

// execute runs the pending steps, at most op.Concurrency at once, and
// ends the operation.
func (m *Manager) execute(ctx context.Context, op *Operation, spec *agent.ContainerSpec) {
	defer m.wg.Done()
	m.update(op, func() { op.Status, op.Started = StatusRunning, time.Now().UTC() })
	sem := make(chan struct{}, op.Concurrency)
	var wg sync.WaitGroup
	for i := range op.Steps {
		if op.Steps[i].Status != StatusPending {
			continue
		}
		acquired := false
		select {
		case sem <- struct{}{}:
			acquired = true
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			if acquired {
				<-sem
			}
			m.update(op, func() {
				op.Steps[i].Status, op.Steps[i].Error = StatusCancelled, "not started: the operation was cancelled"
				op.Done++
			})
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			m.runStep(ctx, op, i, spec)
		}()
	}
	wg.Wait()
	m.update(op, func() {
		m.conclude(op, ctx.Err() != nil && m.ctx.Err() == nil)
		delete(m.cancels, op.ID)
	})
	m.log.Info("operation ended", "id", op.ID, "status", op.Status, "err", op.Error)
}

// conclude sets an operation's status from its steps; with m.mu held.
func (m *Manager) conclude(op *Operation, cancelled bool) {
	var failed, ok, skipped []string
	for _, s := range op.Steps {
		switch s.Status {
		case StatusSuccess:
			ok = append(ok, s.Container)
		case StatusCancelled:
			skipped = append(skipped, s.Container)
		default:
			failed = append(failed, s.Container+": "+s.Error)
		}
	}
	op.Ended = time.Now().UTC()
	switch {
	case cancelled:
		op.Status = StatusCancelled
		op.Error = fmt.Sprintf("cancelled: %d of %d steps done, %d not started", len(ok), len(op.Steps), len(skipped))
	case m.ctx.Err() != nil:
		op.Status = StatusFailure
		op.Error = fmt.Sprintf("the controller stopped during the operation: %d of %d steps done", len(ok), len(op.Steps))
	case len(failed) > 0:
		op.Status = StatusFailure
		op.Error = fmt.Sprintf("%d of %d steps failed (those containers are still where they were): %s", len(failed), len(op.Steps), strings.Join(failed, "; "))
	default:
		op.Status = StatusSuccess
	}
}

// runStep moves (or starts) one container.
func (m *Manager) runStep(ctx context.Context, op *Operation, i int, spec *agent.ContainerSpec) {
	var s Step
	m.update(op, func() {
		op.Steps[i].Status, op.Steps[i].Start = StatusRunning, time.Now().UTC()
		s = op.Steps[i]
	})
	var err error
	var rec *migration.Record
	if op.Kind == KindRun {
		err = m.runOn(ctx, s.To, spec)
	} else {
		rec, err = m.migrate(ctx, s)
	}
	// A step cut by a cancel (or a stopping controller) ended on the
	// source agent, which finished or rolled back on its own: ask where
	// the container is now rather than guess.
	if err != nil && rec == nil && ctx.Err() != nil && op.Kind != KindRun {
		actx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		at := m.settledWhere(actx, s)
		cancel()
		if at == s.To {
			err = nil
		} else {
			err = fmt.Errorf("interrupted by the cancel; %s is on %s", s.Container, orUnknown(at))
		}
	}
	m.update(op, func() {
		st := &op.Steps[i]
		st.End = time.Now().UTC()
		if rec != nil {
			st.MigrationStatus, st.DowntimeMs, st.TotalMs = rec.Status, rec.TimeToReadyMs, rec.TotalMs
		}
		st.Status = StatusSuccess
		if err != nil && (rec == nil || rec.Status != migration.StatusSuccess) {
			st.Status, st.Error = StatusFailure, err.Error()
		} else if err != nil {
			st.Error = err.Error() // moved; something after it went wrong
		}
		op.Done++
	})
}

func (m *Manager) migrate(ctx context.Context, s Step) (*migration.Record, error) {
	c, err := m.client(s.From)
	if err != nil {
		return nil, err
	}
	if !m.schedulable(s.To) {
		return nil, fmt.Errorf("%s became unschedulable", s.To)
	}
	res, err := c.Migrate(ctx, s.Container, agent.MigrateRequest{To: s.To})
	if res != nil {
		return &res.Record, err
	}
	return nil, err
}

func (m *Manager) runOn(ctx context.Context, host string, spec *agent.ContainerSpec) error {
	c, err := m.client(host)
	if err != nil {
		return err
	}
	_, err = c.Run(ctx, *spec)
	return err
}

func (m *Manager) schedulable(host string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	h, ok := m.hosts[host]
	return ok && !h.Unschedulable
}

// settledWhere waits for a container whose migration was interrupted to
// be running on one host, and names it ("" if none says so in time).
func (m *Manager) settledWhere(ctx context.Context, s Step) string {
	for {
		if at := m.where(ctx, s.Container); at != "" {
			return at
		}
		select {
		case <-ctx.Done():
			return ""
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func orUnknown(host string) string {
	if host == "" {
		return "no host that answers"
	}
	return host
}

// endInterrupted ends an operation a previous run of the controller left
// running: failed, each interrupted step resolved by where its container
// is now.
func (m *Manager) endInterrupted(op *Operation) {
	defer m.wg.Done()
	ctx, cancel := context.WithTimeout(m.ctx, time.Minute)
	defer cancel()
	for i := range op.Steps {
		s := &op.Steps[i]
		switch s.Status {
		case StatusPending:
			m.update(op, func() { s.Status, s.Error = StatusCancelled, "not started: the controller restarted"; op.Done++ })
		case StatusRunning:
			at := m.settledWhere(ctx, *s)
			m.update(op, func() {
				s.End, s.Status = time.Now().UTC(), StatusFailure
				s.Error = "interrupted by a controller restart; " + s.Container + " is on " + orUnknown(at)
				if at == s.To && s.To != "" {
					s.Status, s.Error = StatusSuccess, "completed while the controller restarted"
				}
				op.Done++
			})
		}
	}
	m.update(op, func() {
		m.conclude(op, false)
		if op.Status == StatusSuccess {
			return
		}
		op.Status = StatusFailure
		op.Error = "the controller restarted during the operation; " + op.Error
	})
	m.log.Warn("operation interrupted by a restart", "id", op.ID, "status", op.Status, "err", op.Error)
}

// Operation returns one operation.
func (m *Manager) Operation(id string) (Operation, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	op, ok := m.ops[id]
	if !ok {
		return Operation{}, fmt.Errorf("%w: no operation %q", controller.ErrNotFound, id)
	}
	return copyOp(op), nil
}

// Operations lists operations, newest first.
func (m *Manager) Operations() []Operation {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Operation, 0, len(m.ops))
	for _, op := range m.ops {
		out = append(out, copyOp(op))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID > out[j].ID })
	return out
}

// Cancel stops an operation: steps not started are not run; a migration
// under way rolls back if it has not gone live yet, and completes
// otherwise (the step then says so).
func (m *Manager) Cancel(id string) (Operation, error) {
	m.mu.Lock()
	op, ok := m.ops[id]
	cancel := m.cancels[id]
	if !ok {
		m.mu.Unlock()
		return Operation{}, fmt.Errorf("%w: no operation %q", controller.ErrNotFound, id)
	}
	if op.Finished() || cancel == nil {
		st := op.Status
		m.mu.Unlock()
		return Operation{}, fmt.Errorf("%w: operation %s already ended (%s)", controller.ErrConflict, id, st)
	}
	m.mu.Unlock()
	cancel()
	return m.Operation(id)
}

// Wait returns the operation once it ended or ctx ends (then as it is).
func (m *Manager) Wait(ctx context.Context, id string) (Operation, error) {
	for {
		op, err := m.Operation(id)
		if err != nil || op.Finished() {
			return op, err
		}
		select {
		case <-ctx.Done():
			return op, nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// running returns the unfinished operation of kind on target, if any.
func (m *Manager) running(kind, target string) *Operation {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, op := range m.ops {
		if op.Kind == kind && op.Target == target && !op.Finished() {
			return op
		}
	}
	return nil
}
