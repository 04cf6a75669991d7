package controller

import (
	"errors"
	"net/http"
	"strings"
)

// Every write is a list of operations handed to Apply, so a REST call, a
// seed endpoint and a batch share one validation, one rollback and one
// commit path.

func (c *Controller) applyAndRead(r *http.Request, op Op) (int, any, error) {
	if err := c.Apply([]Op{op}, false); err != nil {
		return 0, nil, err
	}
	return c.getAddress(r)
}

func (c *Controller) putAddress(r *http.Request) (int, any, error) {
	var spec AddressSpec
	if err := decode(r, &spec, true); err != nil {
		return 0, nil, err
	}
	return c.applyAndRead(r, Op{Op: "set_address", IP: r.PathValue("ip"), Forward: spec.Forward, ARP: spec.ARP})
}

func (c *Controller) moveAddress(r *http.Request) (int, any, error) {
	var req MoveRequest
	if err := decode(r, &req, true); err != nil {
		return 0, nil, err
	}
	return c.applyAndRead(r, Op{Op: "move_address", IP: r.PathValue("ip"), Port: req.Port, DstMAC: req.DstMAC})
}

func (c *Controller) deleteAddress(r *http.Request) (int, any, error) {
	if err := c.Apply([]Op{{Op: "delete_address", IP: r.PathValue("ip")}}, false); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, Status{Status: "deleted"}, nil
}

// membersBody is the body of PUT /v1/services/{proto}/{vip}/{port}.
type membersBody struct {
	Members []MemberSpec `json:"members"`
}

func (c *Controller) putService(r *http.Request) (int, any, error) {
	ref, _, err := serviceFromPath(r)
	if err != nil {
		return 0, nil, err
	}
	var body membersBody
	if err := decode(r, &body, true); err != nil {
		return 0, nil, err
	}
	if err := c.Apply([]Op{{Op: "set_service", Service: &ServiceSpec{ServiceRef: ref, Members: body.Members}}}, false); err != nil {
		return 0, nil, trimField(err, "service.") // the body's fields are top-level here
	}
	return c.getService(r)
}

func (c *Controller) deleteService(r *http.Request) (int, any, error) {
	ref, _, err := serviceFromPath(r)
	if err != nil {
		return 0, nil, err
	}
	if err := c.Apply([]Op{{Op: "delete_service", Service: &ServiceSpec{ServiceRef: ref}}}, false); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, Status{Status: "deleted"}, nil
}

// memberBody is the body of PUT .../members/{addr}.
type memberBody struct {
	Port  uint16 `json:"port,omitempty"`
	State string `json:"state,omitempty"`
}

func (c *Controller) putMember(r *http.Request) (int, any, error) {
	ref, _, err := serviceFromPath(r)
	if err != nil {
		return 0, nil, err
	}
	var body memberBody
	if r.ContentLength != 0 {
		if err := decode(r, &body, true); err != nil {
			return 0, nil, err
		}
	}
	m := MemberSpec{Addr: r.PathValue("addr"), Port: body.Port, State: body.State}
	if err := c.Apply([]Op{{Op: "set_member", Service: &ServiceSpec{ServiceRef: ref}, Member: &m}}, false); err != nil {
		return 0, nil, err
	}
	return c.getService(r)
}

func (c *Controller) deleteMember(r *http.Request) (int, any, error) {
	ref, _, err := serviceFromPath(r)
	if err != nil {
		return 0, nil, err
	}
	m := MemberSpec{Addr: r.PathValue("addr")}
	if err := c.Apply([]Op{{Op: "delete_member", Service: &ServiceSpec{ServiceRef: ref}, Member: &m}}, false); err != nil {
		return 0, nil, err
	}
	return c.getService(r)
}

// ReaddressRequest is the body of POST /v1/members/readdress.
type ReaddressRequest struct {
	Old string `json:"old"`
	New string `json:"new"`
}

func (c *Controller) readdressMember(r *http.Request) (int, any, error) {
	var req ReaddressRequest
	if err := decode(r, &req, true); err != nil {
		return 0, nil, err
	}
	if err := c.Apply([]Op{{Op: "readdress_member", Old: req.Old, New: req.New}}, false); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, Status{Status: "success"}, nil
}

// DeletedFlows answers DELETE /v1/conntrack.
type DeletedFlows struct {
	Deleted int `json:"deleted"`
}

// deleteConntrack removes flows (all, or those matching vip=, member=,
// client=). Flows are the data plane's, not desired state: nothing is
// stored, and a removed flow that is still active gets a member afresh.
func (c *Controller) deleteConntrack(r *http.Request) (int, any, error) {
	match, err := flowFilter(r)
	if err != nil {
		return 0, nil, err
	}
	n, err := c.dp.DeleteFlows(match)
	return http.StatusOK, DeletedFlows{Deleted: n}, err
}

func (c *Controller) putFlood(r *http.Request) (int, any, error) {
	var req FloodSetting
	if err := decode(r, &req, true); err != nil {
		return 0, nil, err
	}
	if req.Enabled == nil {
		return 0, nil, errField(ErrInvalid, "enabled", "missing (true or false)")
	}
	if err := c.Apply([]Op{{Op: "set_flood", Flood: req.Enabled}}, false); err != nil {
		return 0, nil, err
	}
	return c.getFlood(r)
}

func (c *Controller) postBatch(r *http.Request) (int, any, error) {
	var b Batch
	if err := decode(r, &b, true); err != nil {
		return 0, nil, err
	}
	if len(b.Ops) == 0 {
		return 0, nil, errField(ErrInvalid, "ops", "empty")
	}
	if err := c.checkSteer(r, b.Ops); err != nil {
		return 0, nil, err
	}
	if err := c.Apply(b.Ops, true); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, BatchResult{Applied: len(b.Ops)}, nil
}

// trimField removes a prefix from the field an error names.
func trimField(err error, prefix string) error {
	var fe *fieldError
	if !errors.As(err, &fe) || !strings.HasPrefix(fe.field, prefix) {
		return err
	}
	c := *fe
	c.field = strings.TrimPrefix(fe.field, prefix)
	return &c
}
