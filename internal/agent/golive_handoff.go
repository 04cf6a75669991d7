package agent

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/containerflow/containerflow/internal/migration/handoff"
)

// The clients' frames and datagrams the source took during the freeze are
// best delivered while the restored container has not run yet: the
// destination asks for them at go-live, between taking the address and
// letting CRIU resume the tasks. Sent any later, QUIC drops the datagrams
// as duplicates: once the restored server has acknowledged newer packets
// and seen that acknowledgement acknowledged (one round trip here), it
// ignores packet numbers below it. The migration's handoff step, after
// ready, remains for the paths where the destination cannot ask (the
// runc engine, a go-live that failed).

// handoffTimeout bounds the request inside the go-live: every millisecond
// of it is downtime, and the handoff step after ready is the fallback.
const handoffTimeout = 300 * time.Millisecond

// askHandoff asks the source of an incoming container for its handoff,
// now that the address points here and the namespace is open.
func (a *Agent) askHandoff(ctx context.Context, from string, plain bool, name string) {
	c, err := a.peerClient(from, plain)
	if err != nil {
		return
	}
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(ctx, handoffTimeout)
	defer cancel()
	var r handoff.Released
	if err := c.do(ctx, "POST", "/v1/migrations/"+name+"/handoff", nil, &r); err != nil {
		a.log.Warn("no handoff inside the go-live; the source sends it after", "name", name, "from", from, "err", err)
		return
	}
	a.log.Debug("handoff inside the go-live", "name", name, "frames", r.Frames, "datagrams", r.Datagrams, "took", time.Since(t0))
}

// serveHandoff is the source's side: it sends what it took since the
// freeze into the switch, which points at the destination by now.
func (a *Agent) serveHandoff(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	a.mu.Lock()
	e, ok := a.containers[name]
	var src *localSource
	if ok {
		src = e.out
	}
	a.mu.Unlock()
	if src == nil {
		writeErr(w, fmt.Errorf("%w: no migration of %s from %s", ErrConflict, name, a.cfg.Name))
		return
	}
	src.asked.Store(true)
	rel, err := src.handoffNow()
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rel)
}
