package agent

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/testprog"
)

// A client sends one line while the container is frozen and then stays
// quiet. The source catches the frame, hands it to the destination once it
// is live, and the answer is the one the process would have given.
func TestHandoffOfFramesSentDuringTheFreeze(t *testing.T) {
	for _, handoff := range []bool{true, false} {
		t.Run(fmt.Sprint("handoff=", handoff), func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			e.runOn(testbed.HostA, ContainerSpec{Name: "py", IP: netip.MustParseAddr("198.18.0.2"), Args: testprog.Args(testprog.Counter)})
			lc := newLineConn(t, e.dial("198.18.0.2:7000"))
			lc.say("a", "1:a")

			type result struct {
				res *MigrationResult
				err error
			}
			// The line goes out while the container is frozen.
			e.agents[testbed.HostA].faults.afterFreeze = func() { fmt.Fprintf(lc.c, "b\n") }
			done := make(chan result, 1)
			go func() {
				r, err := e.clients[testbed.HostA].Migrate(ctx, "py", MigrateRequest{To: testbed.HostB, NoHandoff: !handoff})
				done <- result{r, err}
			}()
			_ = lc.c.SetDeadline(time.Now().Add(15 * time.Second))
			got, err := lc.rd.ReadString('\n')
			answered := time.Now()
			r := <-done
			if r.err != nil {
				t.Fatalf("migration: %v", r.err)
			}
			if err != nil || got != "2:b\n" {
				t.Fatalf("answer to the line sent during the freeze: %q %v", got, err)
			}
			rec := r.res.Record
			if handoff && rec.HandoffFrames == 0 {
				t.Fatal("no frame was handed off, though one was sent during the freeze")
			}
			if !handoff && rec.HandoffFrames != 0 {
				t.Fatalf("handoff disabled, yet %d frames handed off", rec.HandoffFrames)
			}
			t.Logf("handoff %v: %d frames; answer %.1f ms after the destination was ready (time to ready %.1f ms)",
				handoff, rec.HandoffFrames, float64(answered.UnixNano()-rec.ReadyNs)/1e6, rec.TimeToReadyMs)
			lc.say("c", "3:c")
			if strings.Contains(rec.Error, "handoff") {
				t.Errorf("handoff error: %s", rec.Error)
			}
		})
	}
}
