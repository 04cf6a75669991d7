package tclass_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/containerflow/containerflow/internal/agent"
	"github.com/containerflow/containerflow/internal/nsrun"
	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/testbed/tbtest"
	"github.com/containerflow/containerflow/internal/workload/stream"
)

// A testbed with --migration-net data --link-rate: a container with a live
// stream moves hostA -> hostB with its images on the data link (hostA's
// eth0, through the eBPF switch), in the migration class, and not on the
// management network; the stream loses nothing and keeps going.
func TestMigrationOverDataNetwork(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tb := tbtest.Up(t, "d", testbed.Config{AgentBinary: self, MigrationNet: testbed.MigrationNetData, LinkRate: 200e6})
	tok, err := tb.Token()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a := agent.NewClient("unix://"+tb.AgentSocket(testbed.HostA), agent.ClientOptions{Token: tok})
	ip := netip.MustParseAddr("198.18.0.2")
	if _, err := a.Run(ctx, agent.ContainerSpec{Name: "s", IP: ip,
		Args: []string{"/opt/cflow/bin/" + filepath.Base(self), "workload", "stream-server", "--memory-mib", "8"}}); err != nil {
		t.Fatal(err)
	}
	var conn *stream.Conn
	deadline := time.Now().Add(15 * time.Second)
	for conn == nil {
		c, err := tb.Dial(testbed.Client, "tcp4", ip.String()+":9000", time.Second)
		switch {
		case err == nil:
			conn = stream.Start(c, 5*time.Millisecond, 20*time.Millisecond)
		case time.Now().After(deadline):
			t.Fatal(err)
		default:
			time.Sleep(50 * time.Millisecond)
		}
	}
	defer conn.Stop(ctx, 0)
	waitRecords(t, conn)

	ns, _ := tb.Netns(testbed.HostA)
	before := counters(t, ns)
	mgmtBefore := txBytes(t, ns, testbed.MgmtIf)
	res, err := a.Migrate(ctx, "s", agent.MigrateRequest{To: testbed.HostB})
	if err != nil {
		t.Fatalf("migrate over the data network: %v", err)
	}
	r := res.Record
	after := counters(t, ns)
	mgmt := txBytes(t, ns, testbed.MgmtIf) - mgmtBefore
	mig := after.Migration.Bytes - before.Migration.Bytes
	t.Logf("images %d bytes (%d on the wire); hostA eth0 migration class +%d bytes, live +%d; mgmt0 sent %d bytes; time to ready %.1f ms",
		r.CheckpointB, r.TransferWireB, mig, after.Live.Bytes-before.Live.Bytes, mgmt, r.TimeToReadyMs)
	if r.TransferWireB <= 0 || mig < uint64(r.TransferWireB) {
		t.Errorf("the image stream (%d bytes) did not cross hostA's data link in the migration class (+%d bytes)", r.TransferWireB, mig)
	}
	if mgmt > uint64(r.TransferWireB)/10 {
		t.Errorf("hostA sent %d bytes on the management network during a migration over data", mgmt)
	}
	b := agent.NewClient("unix://"+tb.AgentSocket(testbed.HostB), agent.ClientOptions{Token: tok})
	if info, err := b.Get(ctx, "s"); err != nil || info.State != agent.StateRunning {
		t.Fatalf("hostB: %+v %v", info, err)
	}
	waitRecords(t, conn)
	st := conn.Stop(ctx, 5*time.Second)
	if st.Dropped || st.Echo.Lost+st.Server.Lost+st.Echo.Duplicated+st.Server.Duplicated > 0 || st.Unanswered() > 0 {
		t.Fatalf("stream across the migration: %+v", st)
	}
	if err := b.Remove(ctx, "s"); err != nil {
		t.Fatal(err)
	}
}

// waitRecords waits until both sequences of conn have advanced: the
// container answers.
func waitRecords(t *testing.T, conn *stream.Conn) {
	t.Helper()
	before := conn.Stats()
	deadline := time.Now().Add(15 * time.Second)
	for {
		now := conn.Stats()
		if now.Dropped {
			t.Fatalf("stream dropped: %s", now.Err)
		}
		if now.Echo.Next > before.Echo.Next+2 && now.Server.Next > before.Server.Next+2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream stalled: %+v", now)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func txBytes(t *testing.T, ns, ifname string) uint64 {
	t.Helper()
	var n uint64
	err := nsrun.Do(ns, func() error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		n = l.Attrs().Statistics.TxBytes
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
