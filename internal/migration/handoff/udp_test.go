package handoff

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/cnet"
	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/testbed/tbtest"
)

// The hold takes datagrams up to its bound, counts the rest as lost, and
// leaves nothing behind: no nftables table, no reader.
func TestUDPHoldBound(t *testing.T) {
	tb := tbtest.Up(t, "h", testbed.Config{})
	ip := netip.MustParseAddr("198.18.0.20")
	cn, err := tb.AddContainerNet(testbed.HostA, "held", ip, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.Steer(ip, cn.MAC, testbed.HostA); err != nil {
		t.Fatal(err)
	}
	defer func(n int) { udpMaxDatagrams = n }(udpMaxDatagrams)
	udpMaxDatagrams = 5
	hostNs, _ := tb.Netns(testbed.HostA)
	c, err := Start(hostNs, testbed.UplinkIf, cn.MAC, ip, cn.Netns)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tb.Dial(testbed.Client, "udp4", ip.String()+":9", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range 12 {
		if _, err := fmt.Fprintf(conn, "d%d", i); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	r, err := c.Release()
	if err != nil {
		t.Fatal(err)
	}
	if r.Datagrams != 5 || r.DatagramsLost != 7 {
		t.Errorf("released %+v, want 5 datagrams and 7 lost", r)
	}
	// The released hold stays until tidied (removing is slow), then
	// nothing is left.
	if err := cnet.Tidy(cn.Netns); err != nil {
		t.Fatal(err)
	}
	tables, err := cnet.Tables(cn.Netns)
	if err != nil || len(tables) != 0 {
		t.Errorf("tables left in %s after the release and tidy: %v %v", cn.Netns, tables, err)
	}
}
