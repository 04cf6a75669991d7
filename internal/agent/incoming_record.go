package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	"github.com/containerflow/containerflow/internal/cnet"
	"github.com/containerflow/containerflow/internal/migration"
	"github.com/containerflow/containerflow/internal/runtime"
)

// An agent killed while a restored container waits for its source's
// commit leaves that container running, and perhaps live: the clients may
// already talk to it. Its next run must not take it for debris of an
// interrupted migration and remove it — the source, whose answer was lost
// with the agent, asks again and commits (cflow bench soak, finding 14:
// the source rolled back under clients that had moved on, and the
// restarted destination removed the live copy, its sockets sending FIN).
// So a staged migration is written down, and a restored copy with such a
// record is adopted as restored, waiting for its commit or abort.

// incomingRecord is what a restarted agent needs of a staged migration.
type incomingRecord struct {
	Spec         ContainerSpec `json:"spec"`
	From         string        `json:"from"`
	Plain        bool          `json:"plain,omitempty"`
	Dir          string        `json:"dir"`
	Engine       string        `json:"engine"`
	ResumeSignal int           `json:"resume_signal,omitempty"`
	PostCopy     bool          `json:"post_copy,omitempty"`
	// Switched: the address points here and the namespace was opened
	// (to TCP once the tasks ran).
	Switched bool `json:"switched,omitempty"`
}

func (a *Agent) incomingPath(name string) string {
	return filepath.Join(a.cfg.StateDir, "incoming", name+".json")
}

// saveIncoming writes e's staged migration down (again, once it went live).
func (a *Agent) saveIncoming(e *entry) error {
	a.mu.Lock()
	in := e.incoming
	if in == nil {
		a.mu.Unlock()
		return nil
	}
	rec := incomingRecord{Spec: e.info.ContainerSpec, From: in.from, Plain: in.plain, Dir: in.dir, Engine: in.engine,
		ResumeSignal: in.resumeSignal, PostCopy: in.pageServer != "", Switched: in.switched}
	a.mu.Unlock()
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	p := a.incomingPath(rec.Spec.Name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

func (a *Agent) loadIncoming(name string) (incomingRecord, bool) {
	var rec incomingRecord
	b, err := os.ReadFile(a.incomingPath(name))
	if err != nil || json.Unmarshal(b, &rec) != nil || rec.Spec.Name != name {
		return rec, false
	}
	return rec, true
}

// adoptIncoming re-registers c, restored by the previous run for the
// migration rec describes, as restored and waiting for its commit. A
// post-copy copy is not adopted: its pages came through a daemon that
// died with that run, so its memory may be incomplete.
func (a *Agent) adoptIncoming(c runtime.Container, rec incomingRecord) bool {
	if rec.PostCopy || c.Status != "running" {
		return false
	}
	if rec.Switched {
		// The previous run may have died between opening the namespace
		// to UDP and to TCP (goLiveTCP): the tasks run, the address is
		// here, so TCP opens now.
		if err := cnet.Unlock(a.netns(c.Name)); err != nil {
			a.log.Error("an adopted incoming container's namespace did not open", "name", c.Name, "err", err)
		}
	}
	busy := make(chan struct{})
	close(busy)
	in := &incoming{resumeSignal: rec.ResumeSignal, dir: rec.Dir, engine: rec.Engine, from: rec.From, plain: rec.Plain,
		busy: busy, cancel: func() {}, live: rec.Switched, switched: rec.Switched,
		outcome: &restoreOutcome{Report: restoredReport(rec)}}
	a.containers[c.Name] = &entry{info: ContainerInfo{ContainerSpec: rec.Spec, Host: a.cfg.Name, State: StateIncoming, Pid: c.Pid, Netns: a.netns(c.Name)}, incoming: in}
	// Its history is fetched again, as at the staging (the lines the copy
	// wrote under the previous run, if any, are not kept): the source
	// hands its log over only once this host has taken it.
	a.inheritLogs(rec.Spec, rec.From, rec.Plain)
	a.log.Warn("adopted an incoming container restored before this agent restarted: it waits for its source's commit", "name", c.Name, "from", rec.From)
	return true
}

// restoredReport is what an adopted copy can say of its restore: that it
// is done, and whether it went live.
func restoredReport(rec incomingRecord) migration.DestReport {
	return migration.DestReport{Switched: rec.Switched, RestoredAt: time.Now()}
}
