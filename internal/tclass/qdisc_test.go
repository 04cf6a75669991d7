package tclass_test

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/tclass"
	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/testbed/tbtest"
)

// Install on a real interface (hostA's eth0 of a bare testbed), read back
// through netlink; a second Install with other parameters changes the same
// qdisc, classes and filters instead of adding to them; Remove takes them
// away, and only them.
func TestInstallReplaceRemove(t *testing.T) {
	tb := tbtest.Up(t, "c", testbed.Config{})
	ns, _ := tb.Netns(testbed.HostA)
	if err := tclass.Install(ns, testbed.UplinkIf, tclass.Config{Rate: 100e6, DSCP: tclass.DefaultDSCP}); err != nil {
		t.Fatal(err)
	}
	checkInstalled(t, ns, 100e6, 1)
	for _, rate := range []uint64{200e6, 200e6} {
		if err := tclass.Install(ns, testbed.UplinkIf, tclass.Config{Rate: rate, DSCP: tclass.DefaultDSCP}); err != nil {
			t.Fatal(err)
		}
		checkInstalled(t, ns, rate, 1)
	}
	// Unmarked: the classes stay, the filters go; everything is live.
	if err := tclass.Install(ns, testbed.UplinkIf, tclass.Config{Rate: 200e6, DSCP: -1}); err != nil {
		t.Fatal(err)
	}
	checkInstalled(t, ns, 200e6, 0)
	if err := tclass.SetFilters(ns, testbed.UplinkIf, tclass.DefaultDSCP); err != nil {
		t.Fatal(err)
	}
	checkInstalled(t, ns, 200e6, 1)

	for _, bad := range []tclass.Config{{Rate: 999_999, DSCP: 8}, {Rate: 100e6, DSCP: 0}, {Rate: 100e6, DSCP: 64}} {
		if err := tclass.Install(ns, testbed.UplinkIf, bad); err == nil {
			t.Errorf("Install(%+v) accepted", bad)
		}
	}
	removed, err := tclass.Remove(ns, testbed.UplinkIf)
	if err != nil || !removed {
		t.Fatalf("Remove: %v, removed %v", err, removed)
	}
	st, err := tclass.Read(ns, testbed.UplinkIf)
	if err != nil || st.Installed || st.HTBQdiscs != 0 {
		t.Fatalf("after Remove: %+v %v", st, err)
	}
	if removed, err := tclass.Remove(ns, testbed.UplinkIf); err != nil || removed {
		t.Fatalf("second Remove: %v, removed %v", err, removed)
	}
}

// checkInstalled reads the interface back: one htb root of ours, the three
// classes with their rates and priorities, filters (per protocol) sending
// to the migration class.
func checkInstalled(t *testing.T, ns string, rate uint64, filters int) *tclass.State {
	t.Helper()
	st, err := tclass.Read(ns, testbed.UplinkIf)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Installed || st.RootQdiscs != 1 || st.HTBQdiscs != 1 || st.Other != 0 {
		t.Fatalf("qdiscs: %+v", st)
	}
	if st.Parent == nil || st.Live == nil || st.Migration == nil {
		t.Fatalf("classes missing: %+v", st)
	}
	mig := uint64(float64(rate) * tclass.MigrationShare)
	// The kernel keeps rates in bytes/s: compare in bytes.
	if st.Parent.Rate/8 != rate/8 || st.Parent.Ceil/8 != rate/8 ||
		st.Live.Rate/8 != (rate-mig)/8 || st.Live.Ceil/8 != rate/8 || st.Live.Prio != 0 ||
		st.Migration.Rate/8 != mig/8 || st.Migration.Ceil/8 != rate/8 || st.Migration.Prio != 1 {
		t.Fatalf("classes at %d bit/s: parent %+v live %+v migration %+v", rate, *st.Parent, *st.Live, *st.Migration)
	}
	if st.MigrationFiltersIPv4 != filters || st.MigrationFiltersIPv6 != filters {
		t.Fatalf("want %d migration filter(s) per protocol, got ipv4 %d ipv6 %d (%d filter entries)",
			filters, st.MigrationFiltersIPv4, st.MigrationFiltersIPv6, st.Filters)
	}
	return st
}

// Real packets through the classes on hostA's eth0: a connection hostA
// dials with the marking Control, and one hostB dials to a marking
// Listener (hostA sends the bulk back), land in the migration class; an
// unmarked one in the live class. Read from the classes' byte counters.
func TestMarkedConnectionsLandInMigrationClass(t *testing.T) {
	tb := tbtest.Up(t, "m", testbed.Config{})
	ns, _ := tb.Netns(testbed.HostA)
	if err := tclass.Install(ns, testbed.UplinkIf, tclass.Config{Rate: 1e9, DSCP: tclass.DefaultDSCP}); err != nil {
		t.Fatal(err)
	}
	a, _ := tb.Spec(testbed.HostA)
	b, _ := tb.Spec(testbed.HostB)
	const n = 4 << 20

	// hostA dials hostB and sends.
	lb, err := tb.Listen(testbed.HostB, "tcp4", b.DataIP.String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	before := counters(t, ns)
	var c net.Conn
	err = tb.Do(testbed.HostA, func() error {
		d := net.Dialer{Timeout: 5 * time.Second, Control: tclass.Control(tclass.DefaultDSCP)}
		c, err = d.Dial("tcp4", lb.Addr().String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sendTo(t, c, lb, n)
	after := counters(t, ns)
	if got := after.Migration.Bytes - before.Migration.Bytes; got < n {
		t.Errorf("dialed, marked: migration class got %d bytes of %d sent", got, n)
	}
	if got := after.Live.Bytes - before.Live.Bytes; got >= n/4 {
		t.Errorf("dialed, marked: live class got %d bytes", got)
	}

	// hostB dials a marking listener on hostA, which sends.
	la, err := tb.Listen(testbed.HostA, "tcp4", a.DataIP.String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	la = tclass.Listener(la, tclass.DefaultDSCP, []netip.Addr{b.DataIP})
	defer la.Close()
	before = counters(t, ns)
	cb, err := tb.Dial(testbed.HostB, "tcp4", la.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	sendBack(t, la, cb, n)
	after = counters(t, ns)
	if got := after.Migration.Bytes - before.Migration.Bytes; got < n {
		t.Errorf("accepted from a peer: migration class got %d bytes of %d sent", got, n)
	}

	// Unmarked: live.
	before = counters(t, ns)
	cu, err := tb.Dial(testbed.HostA, "tcp4", lb.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	sendTo(t, cu, lb, n)
	after = counters(t, ns)
	if got := after.Live.Bytes - before.Live.Bytes; got < n {
		t.Errorf("unmarked: live class got %d bytes of %d sent", got, n)
	}
	// A stray closing segment of the marked connections may still pass.
	if got := after.Migration.Bytes - before.Migration.Bytes; got > 4096 {
		t.Errorf("unmarked: migration class got %d bytes", got)
	}
	t.Logf("hostA eth0: live %d bytes, migration %d bytes", after.Live.Bytes, after.Migration.Bytes)
}

func counters(t *testing.T, ns string) *tclass.State {
	t.Helper()
	st, err := tclass.Read(ns, testbed.UplinkIf)
	if err != nil || st.Live == nil || st.Migration == nil {
		t.Fatalf("read classes: %+v %v", st, err)
	}
	return st
}

// sendTo writes n bytes on c and returns once the other end, accepted
// from l, has read them all: by then every data segment has left the
// sender's qdisc.
func sendTo(t *testing.T, c net.Conn, l net.Listener, n int) {
	t.Helper()
	defer c.Close()
	got := make(chan int64, 1)
	go func() {
		s, err := l.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer s.Close()
		m, _ := io.CopyN(io.Discard, s, int64(n))
		got <- m
	}()
	if _, err := c.Write(make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	if m := <-got; m != int64(n) {
		t.Fatalf("receiver got %d of %d bytes", m, n)
	}
}

// sendBack accepts c's connection on l and writes n bytes on it, and
// returns once c has read them.
func sendBack(t *testing.T, l net.Listener, c net.Conn, n int) {
	t.Helper()
	defer c.Close()
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	go func() { _, _ = s.Write(make([]byte, n)) }()
	if m, err := io.CopyN(io.Discard, c, int64(n)); err != nil || m != int64(n) {
		t.Fatalf("got %d of %d bytes: %v", m, n, err)
	}
}
