package agent

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/migration"
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

// Datagrams sent while the container is frozen: with the hold, each
// reaches the restored process exactly once, in order, right after
// go-live — or the source's, resumed after a rollback; without it they
// are lost (UDP does not retransmit).
func TestUDPDatagramsSentDuringTheFreeze(t *testing.T) {
	for _, c := range []struct {
		hold, rollback bool
	}{{true, false}, {false, false}, {true, true}} {
		hold := c.hold
		t.Run(fmt.Sprintf("hold=%v,rollback=%v", c.hold, c.rollback), func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			e.runOn(testbed.HostA, ContainerSpec{Name: "multi", IP: netip.MustParseAddr("198.18.0.3"), Args: testprog.Args(testprog.Multi)})
			udp, err := e.tb.Dial(testbed.Client, "udp4", "198.18.0.3:7001", time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer udp.Close()
			buf := make([]byte, 2048)
			read := func(wait time.Duration) (string, bool) {
				_ = udp.SetReadDeadline(time.Now().Add(wait))
				n, err := udp.Read(buf)
				if err != nil {
					return "", false
				}
				return string(buf[:n]), true
			}
			// The echo process may take a moment to bind.
			for i := 0; ; i++ {
				_, _ = udp.Write([]byte("ping"))
				if got, ok := read(200 * time.Millisecond); ok {
					if got != "1:ping" {
						t.Fatalf("first answer %q", got)
					}
					break
				}
				if i == 25 {
					t.Fatal("the UDP echo does not answer")
				}
			}
			const frozen = 3
			e.agents[testbed.HostA].faults.afterFreeze = func() {
				for i := 1; i <= frozen; i++ {
					_, _ = udp.Write([]byte(fmt.Sprint("frozen-", i)))
				}
			}
			e.steer.refuse = c.rollback
			res, err := e.clients[testbed.HostA].Migrate(ctx, "multi", MigrateRequest{To: testbed.HostB, NoHandoff: !hold})
			e.steer.refuse = false
			if c.rollback {
				if err == nil || res == nil || res.Record.Status != migration.StatusRolledBack {
					t.Fatalf("want a rollback: %+v %v", res, err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			var got []string
			for {
				s, ok := read(500 * time.Millisecond)
				if !ok {
					break
				}
				got = append(got, s)
			}
			rec := res.Record
			t.Logf("hold %v: %d datagrams handed over (%d lost to the bound), answers %q", hold, rec.HandoffDatagrams, rec.HandoffDatagramsLost, got)
			next := 2
			if hold {
				want := []string{"2:frozen-1", "3:frozen-2", "4:frozen-3"}
				if strings.Join(got, ",") != strings.Join(want, ",") || rec.HandoffDatagrams != frozen || rec.HandoffDatagramsLost != 0 {
					t.Fatalf("held datagrams: answers %q, record %d/%d; want %q, each once", got, rec.HandoffDatagrams, rec.HandoffDatagramsLost, want)
				}
				next = 5
			} else if len(got) != 0 || rec.HandoffDatagrams != 0 {
				t.Fatalf("without the hold: answers %q, record %d", got, rec.HandoffDatagrams)
			}
			_, _ = udp.Write([]byte("after"))
			if s, ok := read(2 * time.Second); !ok || s != fmt.Sprintf("%d:after", next) {
				t.Fatalf("after the migration: %q %v, want %d:after", s, ok, next)
			}
		})
	}
}

// A client sends one line once the container is frozen and its network
// locked, the switch then takes its time to refuse the go-live (so the
// client's retransmission timer backs off: 200, 400, 800, 1600 ms), and
// the migration rolls back: the frame the source caught goes to the
// resumed source at once, so the answer comes as the rollback ends, not
// at the client's next retransmission. Without the handoff the answer
// waits for that timer (logged, not asserted: on a loaded machine the
// rollback itself may reach it).
func TestFramesGivenBackAfterRollback(t *testing.T) {
	for _, handoff := range []bool{true, false} {
		t.Run(fmt.Sprint("handoff=", handoff), func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			e.runOn(testbed.HostA, ContainerSpec{Name: "py", IP: netip.MustParseAddr("198.18.0.2"), Args: testprog.Args(testprog.Counter)})
			lc := newLineConn(t, e.dial("198.18.0.2:7000"))
			lc.say("a", "1:a")
			sent := make(chan time.Time, 1)
			e.agents[testbed.HostA].faults.afterFreeze = func() {
				// After the lock, which the dump puts on at once.
				time.AfterFunc(50*time.Millisecond, func() {
					fmt.Fprintf(lc.c, "b\n")
					sent <- time.Now()
				})
			}
			e.steer.refuse, e.steer.slow = true, time.Second
			res, err := e.clients[testbed.HostA].Migrate(ctx, "py", MigrateRequest{To: testbed.HostB, NoHandoff: !handoff})
			e.steer.refuse, e.steer.slow = false, 0
			if err == nil || res == nil || res.Record.Status != migration.StatusRolledBack {
				t.Fatalf("want a rollback: %+v %v", res, err)
			}
			_ = lc.c.SetDeadline(time.Now().Add(15 * time.Second))
			got, err := lc.rd.ReadString('\n')
			answered := time.Now()
			if err != nil || got != "2:b\n" {
				t.Fatalf("answer to the line sent during the freeze: %q %v", got, err)
			}
			ended := time.Unix(0, res.Record.MigrationEndNs)
			after := answered.Sub(ended)
			t.Logf("handoff %v: answered %v after the rollback ended, %v after the line was sent", handoff, after.Round(time.Millisecond), answered.Sub(<-sent).Round(time.Millisecond))
			if handoff && after > 500*time.Millisecond {
				t.Errorf("the answer came %v after the rollback: the caught frame was not given back", after)
			}
			lc.say("c", "3:c")
		})
	}
}
