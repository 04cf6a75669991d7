package agent

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
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

			freezer := fmt.Sprintf("/sys/fs/cgroup/freezer/containerflow/%s-hostA/py/freezer.state", e.tb.Prefix)
			if _, err := os.Stat(freezer); err != nil {
				t.Skipf("no cgroup-v1 freezer to watch here: %v", err)
			}
			type result struct {
				res *MigrationResult
				err error
			}
			done := make(chan result, 1)
			go func() {
				r, err := e.clients[testbed.HostA].Migrate(ctx, "py", MigrateRequest{To: testbed.HostB, NoHandoff: !handoff})
				done <- result{r, err}
			}()
			deadline := time.Now().Add(10 * time.Second)
			for {
				b, _ := os.ReadFile(freezer)
				if bytes.Contains(b, []byte("FROZEN")) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the container never froze")
				}
				time.Sleep(200 * time.Microsecond)
			}
			_ = lc.c.SetDeadline(time.Now().Add(15 * time.Second))
			fmt.Fprintf(lc.c, "b\n")
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
