package agent

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sort"
	"time"

	"github.com/containerflow/containerflow/internal/cnet"
)

// An agent killed while one of its containers was leaving finds it, at
// restart, locked (the lock goes on at the dump) and perhaps frozen or
// stopped. The migration may have finished on the destination all the
// same — the destination runs its restore to the end once it went live,
// and its clients then talk to it — or not. Resuming the local copy in
// the first case would make two; discarding it in the second would lose
// the container. So the restarted agent asks its peers, as the source.

// recoverTimeout bounds the questions to the peers: a destination's
// outcome waits for its restore, which ends within its CRIU timeout.
const recoverTimeout = 90 * time.Second

// recoverLeaving starts, for each adopted container whose namespace is
// locked or whose cgroup is frozen (an agent killed between the freeze and
// the lock: found by cflow bench soak, the container stayed frozen), the
// recovery of its interrupted migration. Until it ends the container is
// migrating (a new migration of it is refused).
func (a *Agent) recoverLeaving() {
	a.mu.Lock()
	var names []string
	for name, e := range a.containers {
		if locked, _ := cnet.Locked(a.netns(name)); locked || a.rt.Frozen(name) {
			e.info.State = StateMigrating
			names = append(names, name)
		}
	}
	a.mu.Unlock()
	for _, name := range names {
		go a.recoverOne(name)
	}
}

func (a *Agent) recoverOne(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), recoverTimeout)
	defer cancel()
	a.mu.Lock()
	spec := a.containers[name].info.ContainerSpec
	a.mu.Unlock()
	peers := make([]string, 0, len(a.cfg.Peers))
	for p := range a.cfg.Peers {
		peers = append(peers, p)
	}
	sort.Strings(peers)
	for _, p := range peers {
		c, err := a.peerClient(p, false)
		if err != nil {
			continue
		}
		var o Outcome
		err = c.do(ctx, "GET", "/v1/migrations/"+name+"/outcome", nil, &o)
		var apiErr *APIError
		if errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound {
			// No incoming migration of it there: none was staged, or it
			// was committed already — the previous life was killed between
			// its commit and the removal of its copy (found by cflow bench
			// soak: two copies ran). A copy that runs there is the one.
			if info, gerr := c.Get(ctx, name); gerr == nil && info.State == StateRunning {
				a.dropLocalCopy(ctx, spec, p)
				a.log.Warn("an interrupted migration had been committed on its destination: the local copy removed", "name", name, "to", p)
				return
			}
			continue
		}
		if err != nil {
			continue // that peer does not answer
		}
		if !o.Restored {
			// Staged or failed there: nothing of it runs.
			_ = c.do(ctx, "POST", "/v1/migrations/"+name+"/abort", nil, nil)
			continue
		}
		if err := c.do(ctx, "POST", "/v1/migrations/"+name+"/commit", nil, nil); err != nil {
			a.log.Error("an interrupted migration completed on its destination, which refused the commit", "name", name, "to", p, "err", err)
			return
		}
		a.dropLocalCopy(ctx, spec, p)
		a.log.Warn("an interrupted migration had completed on its destination: committed there, the local copy removed", "name", name, "to", p)
		return
	}
	// No copy runs elsewhere: this one goes on, where its clients are
	// pointed again.
	err := a.resumeLocked(ctx, spec)
	a.mu.Lock()
	if e, ok := a.containers[name]; ok {
		e.info.State = StateRunning
	}
	a.mu.Unlock()
	if err != nil {
		a.log.Error("could not resume a container whose migration was interrupted", "name", name, "err", err)
		return
	}
	a.log.Warn("an interrupted migration had not completed: the container resumed here", "name", name)
}

// dropLocalCopy removes the copy of a container whose migration to peer
// completed, and records the move.
func (a *Agent) dropLocalCopy(ctx context.Context, spec ContainerSpec, peer string) {
	_ = a.rt.Delete(ctx, spec.Name)
	_ = cnet.Delete(a.netns(spec.Name))
	a.release(spec.Name)
	a.registerMove(spec, peer)
}

// resumeLocked undoes what a dump leaves: sockets in TCP repair, the
// lock, the freezer, stopped tasks; and points the address here.
func (a *Agent) resumeLocked(ctx context.Context, spec ContainerSpec) error {
	if _, err := a.rt.ResetTCPRepair(ctx, spec.Name); err != nil {
		return err
	}
	ns := a.netns(spec.Name)
	if err := cnet.Unlock(ns); err != nil {
		return err
	}
	_ = cnet.RemoveCRIULocks(ns)
	if err := a.rt.Thaw(spec.Name); err != nil {
		return err
	}
	if err := a.rt.ResumeStopped(spec.Name); err != nil {
		return err
	}
	if st := a.cfg.Steerer; st != nil {
		return st.Steer(ctx, spec.IP, net.HardwareAddr(spec.MAC), a.cfg.Name)
	}
	return nil
}
