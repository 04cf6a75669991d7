package controller_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/containerflow/containerflow/internal/controller"
	"github.com/containerflow/containerflow/internal/dataplane"
)

func TestBatchAllOrNothing(t *testing.T) {
	e := newEnv(t, nil)
	base := []controller.Op{
		{Op: "set_address", IP: "198.18.0.50", Forward: &controller.ForwardSpec{Port: "hostA"}, ARP: &controller.ARPSpec{Port: "hostA"}},
		{Op: "set_address", IP: "198.18.0.51", Forward: &controller.ForwardSpec{Port: "hostB"}},
		{Op: "set_service", Service: &controller.ServiceSpec{ServiceRef: controller.ServiceRef{VIP: "198.18.0.60", Port: 80, Proto: "tcp"},
			Members: []controller.MemberSpec{{Addr: "198.18.0.50"}, {Addr: "198.18.0.51"}}}},
	}
	if err := e.c.Batch(bg(), base...); err != nil {
		t.Fatal(err)
	}
	before := e.tables()
	stateBefore := string(e.mustCall(http.StatusOK, "GET", "/v1/state", ""))

	// Validation: a bad operation anywhere refuses the whole batch, and the
	// error names it.
	bad := `{"ops":[
	  {"op":"move_address","ip":"198.18.0.50","port":"hostB"},
	  {"op":"delete_address","ip":"198.18.0.51"},
	  {"op":"set_address","ip":"198.18.0.52","forward":{"port":1,"dst_mac":"01:00:5e:00:00:01"}}]}`
	code, b := e.call("POST", "/v1/batch", bad, testToken)
	if code != http.StatusBadRequest || !strings.Contains(string(b), `"field":"ops[2].forward.dst_mac"`) {
		t.Fatalf("bad batch: HTTP %d %s", code, b)
	}
	// Later operations see the earlier ones: deleting twice is refused.
	twice := `{"ops":[{"op":"delete_address","ip":"198.18.0.51"},{"op":"delete_address","ip":"198.18.0.51"}]}`
	if code, b := e.call("POST", "/v1/batch", twice, testToken); code != http.StatusNotFound || !strings.Contains(string(b), "ops[1].ip") {
		t.Fatalf("double delete: HTTP %d %s", code, b)
	}
	if got := e.tables(); got != before {
		t.Fatalf("a refused batch changed the tables:\n%s\nwas\n%s", got, before)
	}

	// A failure in the middle of applying (the kernel refusing the third
	// step) restores every entry the first steps changed.
	controller.SetTestHookBeforeChange(func(i int) error {
		if i == 3 {
			return errors.New("injected failure")
		}
		return nil
	})
	defer controller.SetTestHookBeforeChange(nil)
	err := e.c.Batch(bg(),
		controller.Op{Op: "move_address", IP: "198.18.0.50", Port: "hostB", DstMAC: "02:42:c6:12:00:32"},
		controller.Op{Op: "delete_address", IP: "198.18.0.51"},
		controller.Op{Op: "set_service", Service: &controller.ServiceSpec{ServiceRef: controller.ServiceRef{VIP: "198.18.0.60", Port: 80, Proto: "tcp"},
			Members: []controller.MemberSpec{{Addr: "198.18.0.53"}}}},
		controller.Op{Op: "set_address", IP: "198.18.0.53", Forward: &controller.ForwardSpec{Port: "hostA"}},
	)
	var ae *controller.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusInternalServerError {
		t.Fatalf("injected failure: %v", err)
	}
	controller.SetTestHookBeforeChange(nil)
	if got := e.tables(); got != before {
		t.Fatalf("tables after a failed batch:\n%s\nwant\n%s", got, before)
	}
	if got := string(e.mustCall(http.StatusOK, "GET", "/v1/state", "")); got != stateBefore {
		t.Fatalf("desired state after a failed batch:\n%s\nwant\n%s", got, stateBefore)
	}
	// The same batch without the failure goes through as a whole.
	if err := e.c.Batch(bg(),
		controller.Op{Op: "move_address", IP: "198.18.0.50", Port: "hostB"},
		controller.Op{Op: "delete_address", IP: "198.18.0.51"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ctl.Dataplane().Address(mustAddr("198.18.0.51")); !errors.Is(err, dataplane.ErrNotFound) {
		t.Fatalf("198.18.0.51 after batch: %v", err)
	}
}

// The address table holds 4096 entries: a batch that would overflow it is
// refused whole (507), nothing written; one that fills it exactly passes,
// and one more entry is refused.
func TestTableFull(t *testing.T) {
	e := newEnv(t, nil)
	have := len(e.ctl.State().Addresses)
	ops := func(n, from int) []controller.Op {
		out := make([]controller.Op, n)
		for i := range out {
			k := from + i + 1
			out[i] = controller.Op{Op: "set_address", IP: fmt.Sprintf("10.%d.%d.%d", k>>16&255, k>>8&255, k&255),
				Forward: &controller.ForwardSpec{Port: "1"}}
		}
		return out
	}
	err := e.c.Batch(bg(), ops(dataplane.MaxAddresses-have+1, 0)...)
	var ae *controller.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusInsufficientStorage || ae.Field != "addresses" {
		t.Fatalf("overflowing batch: %v", err)
	}
	if n := len(e.ctl.State().Addresses); n != have {
		t.Fatalf("refused batch left %d entries, want %d", n, have)
	}
	if err := e.c.Batch(bg(), ops(dataplane.MaxAddresses-have, 0)...); err != nil {
		t.Fatalf("filling batch: %v", err)
	}
	code, b := e.call("PUT", "/v1/addresses/198.18.0.99", `{"forward":{"port":1}}`, testToken)
	if code != http.StatusInsufficientStorage {
		t.Fatalf("one more entry: HTTP %d %s", code, b)
	}
	// Members: at most 16 per service.
	var ms []controller.MemberSpec
	for i := 1; i <= dataplane.MaxMembers+1; i++ {
		ms = append(ms, controller.MemberSpec{Addr: fmt.Sprintf("198.18.1.%d", i)})
	}
	err = e.c.SetService(bg(), controller.ServiceSpec{ServiceRef: controller.ServiceRef{VIP: "198.18.0.61", Port: 1, Proto: "udp"}, Members: ms})
	if !errors.As(err, &ae) || ae.Status != http.StatusInsufficientStorage {
		t.Fatalf("17 members: %v", err)
	}
	// The switch still forwards.
	e.mustCall(http.StatusOK, "POST", "/cleanup", "")
	e.mustCall(http.StatusOK, "POST", "/reinitialize", "")
}
