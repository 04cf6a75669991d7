package controller

import (
	"errors"
	"net/http"
	"strings"
)

// The seed controller's endpoints, with its paths and JSON bodies, so its
// scripts work unchanged. Success answers {"status": "success"} like the
// seed; errors {"error": "..."} with a 4xx status instead of the seed's 500
// (the scripts only test for 200). Where the seed's semantics depend on its
// P4 tables, the choice made here is documented in docs/switch.md.

// seedPort accepts sw_port as a number or a string of digits, as the seed's
// int(sw_port) did, or as a port name.
type seedPort = PortRef

type updateForwardReq struct {
	IPv4   string   `json:"ipv4"`
	SwPort seedPort `json:"sw_port"`
	DstMAC string   `json:"dst_mac"`
}

// seedUpdateForward points forward and arp_forward of ipv4 at sw_port (with
// the optional dst_mac rewrite) in one map update, creating the entry if
// there is none.
func (c *Controller) seedUpdateForward(r *http.Request) (int, any, error) {
	var req updateForwardReq
	if err := decode(r, &req, false); err != nil {
		return 0, nil, err
	}
	if err := c.Apply([]Op{{Op: "move_address", IP: req.IPv4, Port: req.SwPort, DstMAC: req.DstMAC}}, false); err != nil {
		return 0, nil, renameFields(err, map[string]string{"ip": "ipv4", "port": "sw_port"})
	}
	return http.StatusOK, Status{Status: "success"}, nil
}

type migrateNodeReq struct {
	OldIPv4 string `json:"old_ipv4"`
	NewIPv4 string `json:"new_ipv4"`
}

// seedMigrateNode readdresses a load-balancer member: old_ipv4 is replaced
// by new_ipv4 in every service and in the flows using it, which keep their
// member. As in the seed, if new_ipv4 has no address entry it gets one on
// old_ipv4's forward port (forward and arp), added before the flows move.
// The same address is a no-op.
func (c *Controller) seedMigrateNode(r *http.Request) (int, any, error) {
	var req migrateNodeReq
	if err := decode(r, &req, false); err != nil {
		return 0, nil, err
	}
	ops := []Op{{Op: "readdress_member", Old: req.OldIPv4, New: req.NewIPv4}}
	st := c.State()
	oldIP, err1 := parseIPv4("old_ipv4", req.OldIPv4)
	newIP, err2 := parseIPv4("new_ipv4", req.NewIPv4)
	if err1 == nil && err2 == nil && oldIP != newIP {
		if _, ok := st.Addresses[newIP]; !ok {
			if e, ok := st.Addresses[oldIP]; ok && e.Forward != nil {
				p := PortNum(e.Forward.Port)
				ops = append([]Op{{Op: "add_address", IP: req.NewIPv4, Forward: &ForwardSpec{Port: p}, ARP: &ARPSpec{Port: p}}}, ops...)
			}
		}
	}
	if err := c.Apply(ops, false); err != nil {
		return 0, nil, renameFields(err, map[string]string{"old": "old_ipv4", "new": "new_ipv4", "ip": "new_ipv4"})
	}
	return http.StatusOK, Status{Status: "success"}, nil
}

type addForwardReq struct {
	DstAddr string   `json:"dst_addr"`
	Port    seedPort `json:"port"`
	DstMAC  string   `json:"dst_mac"`
}

// seedAddForward inserts forward and arp_forward entries for dst_addr. An
// identical entry is accepted again (scripts can be re-run); a different
// one is a conflict (409): moving an address is /updateForward's job.
func (c *Controller) seedAddForward(r *http.Request) (int, any, error) {
	var req addForwardReq
	if err := decode(r, &req, false); err != nil {
		return 0, nil, err
	}
	op := Op{Op: "add_address", IP: req.DstAddr,
		Forward: &ForwardSpec{Port: req.Port, DstMAC: req.DstMAC}, ARP: &ARPSpec{Port: req.Port}}
	if err := c.Apply([]Op{op}, false); err != nil {
		return 0, nil, renameFields(err, map[string]string{"ip": "dst_addr", "forward.port": "port",
			"arp.port": "port", "forward.dst_mac": "dst_mac"})
	}
	return http.StatusOK, Status{Status: "success"}, nil
}

// seedDeleteClientSnat succeeds without changing anything. The seed's
// client_snat entry rewrote every reply from the service port to the VIP,
// which broke clients talking to a member directly; here reply SNAT applies
// only to flows that entered through a VIP, so there is nothing to delete
// and VIP load balancing keeps working beside same-IP migration.
func (c *Controller) seedDeleteClientSnat(*http.Request) (int, any, error) {
	return http.StatusOK, Status{Status: "success",
		Message: "nothing to delete: reply SNAT applies only to flows that entered through a VIP"}, nil
}

// seedCleanup removes every address entry and service (with their flows);
// the ports stay attached. The empty state is stored, so a restart keeps
// the switch empty until /reinitialize or new entries.
func (c *Controller) seedCleanup(*http.Request) (int, any, error) {
	c.mu.Lock()
	flood := c.state.Flood
	c.mu.Unlock()
	empty := newState()
	empty.Flood = flood
	if err := c.Replace(empty); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, Status{Status: "success", Message: "Cleanup complete"}, nil
}

// seedReinitialize makes the tables what the configuration says, as after a
// first start, plus the steering of every registered container (see
// reinitTarget): the seed's scripts call it between runs, and wiping the
// containers' entries would cut every running container off until it is
// next steered. Entries that already match are not touched, so traffic
// through them is not interrupted.
func (c *Controller) seedReinitialize(*http.Request) (int, any, error) {
	target, skipped := c.reinitTarget()
	if err := c.Replace(target); err != nil {
		return 0, nil, err
	}
	msg := "Reinitialization complete"
	if len(skipped) > 0 {
		msg += "; not re-steered: " + strings.Join(skipped, "; ")
	}
	return http.StatusOK, Status{Status: "success", Message: msg}, nil
}

// reinitTarget is the configuration's state with every registered
// container's address pointed at its host's port, as agents steer it. A
// container whose host names no port is left out and reported.
func (c *Controller) reinitTarget() (*State, []string) {
	st := c.initial.clone()
	var skipped []string
	for _, op := range c.steeringOps() {
		_, next, err := plan(c.ports, st, []Op{op}, false)
		if err != nil {
			skipped = append(skipped, op.IP+": "+err.Error())
			continue
		}
		st = next
	}
	return st, skipped
}

// renameFields rewrites the field an error names into the seed's names.
func renameFields(err error, names map[string]string) error {
	var fe *fieldError
	if !errors.As(err, &fe) {
		return err
	}
	if n, ok := names[fe.field]; ok {
		c := *fe
		c.field = n
		return &c
	}
	return err
}
