package agent

import (
	"context"
	"net/netip"
	"testing"

	"github.com/containerflow/containerflow/internal/testbed"
)

// An echo server with an in-memory counter, in Python: a program from the
// host that no one here wrote.
const pyCounter = `
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7000)); s.listen(16)
n = 0
c, _ = s.accept(); f = c.makefile("rwb", buffering=0)
for line in f:
    n += 1
    f.write(b"%d:" % n + line)
`

func TestMigrateHostProgramBackAndForth(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ip := netip.MustParseAddr("198.18.0.2")
	e.runOn(testbed.HostA, ContainerSpec{Name: "py", IP: ip, Args: []string{"/usr/bin/python3", "-u", "-c", pyCounter}})
	lc := newLineConn(t, e.dial("198.18.0.2:7000"))
	lc.say("a", "1:a")

	res, err := e.clients[testbed.HostA].Migrate(ctx, "py", MigrateRequest{To: testbed.HostB})
	if err != nil {
		t.Fatalf("migrate A->B: %v", err)
	}
	r := res.Record
	t.Logf("A->B: checkpoint %.1f ms, transfer %.1f ms, restore %.1f ms, switch %.1f ms, time to ready %.1f ms, total %.1f ms, %d bytes",
		r.CheckpointMs, r.TransferMs, r.RestoreMs, r.SwitchMs, r.TimeToReadyMs, r.TotalMs, r.CheckpointB)
	if r.Status != "success" || r.CheckpointB == 0 || r.TimeToReadyMs <= 0 || r.SourceNode != testbed.HostA || r.TargetNode != testbed.HostB {
		t.Errorf("bad record: %+v", r)
	}
	lc.say("b", "2:b")
	if _, err := e.clients[testbed.HostA].Get(ctx, "py"); err == nil {
		t.Error("container still listed on hostA")
	}
	if info, err := e.clients[testbed.HostB].Get(ctx, "py"); err != nil || info.State != StateRunning {
		t.Errorf("hostB: %+v %v", info, err)
	}

	if _, err := e.clients[testbed.HostB].Migrate(ctx, "py", MigrateRequest{To: testbed.HostA}); err != nil {
		t.Fatalf("migrate B->A: %v", err)
	}
	lc.say("c", "3:c")
	names, _ := e.tb.ContainerNets(testbed.HostB)
	if len(names) != 0 {
		t.Errorf("hostB still has container namespaces: %v", names)
	}
}
