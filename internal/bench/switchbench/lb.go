package switchbench

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"time"

	"github.com/containerflow/containerflow/internal/controller"
	"github.com/containerflow/containerflow/internal/testbed"
)

// LBResult is the load balancer's spread of new flows over its members.
type LBResult struct {
	Flows     int            `json:"flows"`   // flows that got a member
	Members   map[string]int `json:"members"` // flows per member
	Imbalance float64        `json:"imbalance"`
	Method    string         `json:"method"`
}

var (
	lbVIP     = netip.MustParseAddr("198.18.0.60")
	lbPort    = uint16(7000)
	lbMembers = []string{"198.18.0.21", "198.18.0.22", "198.18.0.23", "198.18.0.24"}
	lbMAC     = "02:cf:c6:12:00:3c"
)

// measureLB sets up a UDP service with 4 members through the API, sends one
// datagram from each of flows distinct client ports to the VIP through the
// switch, and counts the connection-table entries per member.
func measureLB(ctx context.Context, tb *testbed.Testbed, bc *controller.Controller, client *controller.Client, flows int) (LBResult, error) {
	res := LBResult{Members: map[string]int{}, Method: "one UDP datagram per client port from the client node to the VIP; flows counted per member in the connection table"}
	hostB, _ := tb.Spec(testbed.HostB)
	ops := []controller.Op{{Op: "set_address", IP: lbVIP.String(), ARP: &controller.ARPSpec{ReplyMAC: lbMAC}}}
	var members []controller.MemberSpec
	for _, m := range lbMembers {
		// Members sit behind hostB's port; the switch routes to them (MAC
		// rewrite). hostB drops the datagrams: only the switch's choice
		// is measured.
		ops = append(ops, controller.Op{Op: "set_address", IP: m,
			Forward: &controller.ForwardSpec{Port: controller.PortRef(testbed.HostB), DstMAC: hostB.MAC.String()},
			ARP:     &controller.ARPSpec{Port: controller.PortRef(testbed.HostB)}})
		members = append(members, controller.MemberSpec{Addr: m})
	}
	ops = append(ops, controller.Op{Op: "set_service", Service: &controller.ServiceSpec{
		ServiceRef: controller.ServiceRef{VIP: lbVIP.String(), Port: lbPort, Proto: "udp"}, Members: members}})
	if err := client.Batch(ctx, ops...); err != nil {
		return res, fmt.Errorf("set up the service: %w", err)
	}

	err := tb.Do(testbed.Client, func() error {
		dst := &net.UDPAddr{IP: lbVIP.AsSlice(), Port: int(lbPort)}
		src := testbed.Nodes[2].DataIP.AsSlice()
		sent := 0
		for p := 10000; sent < flows && p < 65000; p++ {
			c, err := net.DialUDP("udp4", &net.UDPAddr{IP: src, Port: p}, dst)
			if err != nil {
				continue // port in use
			}
			_, err = c.Write([]byte("lb"))
			c.Close()
			if err == nil {
				sent++
			}
		}
		if sent < flows {
			return fmt.Errorf("sent %d of %d flows", sent, flows)
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	time.Sleep(200 * time.Millisecond) // the last datagrams cross the switch
	fl, err := client.Conntrack(ctx)
	if err != nil {
		return res, err
	}
	for _, f := range fl {
		if ap, err := netip.ParseAddrPort(f.VIP); err == nil && ap.Addr() == lbVIP {
			m, _ := netip.ParseAddrPort(f.Member)
			res.Members[m.Addr().String()]++
			res.Flows++
		}
	}
	if res.Flows == 0 {
		return res, fmt.Errorf("no flow reached the load balancer")
	}
	mean := float64(res.Flows) / float64(len(lbMembers))
	maxN := 0
	for _, m := range lbMembers {
		maxN = max(maxN, res.Members[m])
	}
	res.Imbalance = float64(maxN) / mean
	// Leave the tables as found.
	undo := []controller.Op{{Op: "delete_service", Service: &controller.ServiceSpec{ServiceRef: controller.ServiceRef{VIP: lbVIP.String(), Port: lbPort, Proto: "udp"}}},
		{Op: "delete_address", IP: lbVIP.String()}}
	for _, m := range lbMembers {
		undo = append(undo, controller.Op{Op: "delete_address", IP: m})
	}
	return res, client.Batch(ctx, undo...)
}

func sortedMembers(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
