package controller_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/containerflow/containerflow/internal/controller"
	"github.com/containerflow/containerflow/internal/testbed"
)

// The registry keeps names and addresses unique across hosts, allocates
// from the container network, refuses nodes' and foreign addresses, and
// survives a restart of the controller.
func TestNameRegistry(t *testing.T) {
	e := newEnv(t, nil)
	c := e.c

	web, err := c.Reserve(bg(), controller.NameRequest{Name: "web", Host: testbed.HostA, IP: "198.18.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	if web.MAC != "02:42:c6:12:00:02" {
		t.Errorf("default MAC %s", web.MAC)
	}
	conflict := func(req controller.NameRequest, want string) {
		t.Helper()
		_, err := c.Reserve(bg(), req)
		var api *controller.APIError
		if !errors.As(err, &api) || api.Status != http.StatusConflict || api.Msg != want {
			t.Fatalf("reserve %+v: got %v, want 409 %q", req, err, want)
		}
	}
	conflict(controller.NameRequest{Name: "web", Host: testbed.HostB, IP: "198.18.0.3"}, `name "web" is in use on hostA`)
	conflict(controller.NameRequest{Name: "api", Host: testbed.HostB, IP: "198.18.0.2"}, `address 198.18.0.2 is in use by "web" on hostA`)
	// The same host asking again (an agent retrying) gets its reservation.
	if again, err := c.Reserve(bg(), controller.NameRequest{Name: "web", Host: testbed.HostA}); err != nil || again.IP != web.IP {
		t.Fatalf("same host again: %+v %v", again, err)
	}

	// Allocation skips .1, held addresses, and nodes' addresses.
	var got []string
	for _, n := range []string{"a1", "a2"} {
		rec, err := c.Reserve(bg(), controller.NameRequest{Name: n, Host: testbed.HostB})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rec.IP)
	}
	if strings.Join(got, " ") != "198.18.0.3 198.18.0.4" {
		t.Fatalf("allocated %v", got)
	}

	for _, bad := range []struct{ ip, want string }{
		{"198.19.0.5", "outside the container network 198.18.0.0/24"},
		{"198.18.0.11", "is a node's"},
		{"198.18.0.255", "broadcast"},
		{"nonsense", "ip"},
	} {
		_, err := c.Reserve(bg(), controller.NameRequest{Name: "x", Host: testbed.HostA, IP: bad.ip})
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("ip %s: got %v, want an error with %q", bad.ip, err, bad.want)
		}
	}

	// Steered, then the registry restarts with the controller.
	if err := (&controller.Steerer{Client: c, RewriteMAC: true}).Steer(bg(), mustAddr(web.IP), nil, testbed.HostA); err != nil {
		t.Fatal(err)
	}
	e.restart()
	c = e.c
	names, err := c.Names(bg())
	if err != nil || len(names) != 3 || names[2].Name != "web" || names[2].Host != testbed.HostA {
		t.Fatalf("after restart: %+v %v", names, err)
	}
	conflict(controller.NameRequest{Name: "web", Host: testbed.HostB}, `name "web" is in use on hostA`)

	// A migration moves the name; the old host can no longer release it.
	if _, err := c.Claim(bg(), controller.NameRequest{Name: "web", Host: testbed.HostB, IP: web.IP}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Release(bg(), "web", testbed.HostA); !errors.Is(err, controller.ErrConflict) {
		t.Fatalf("release by the old host: %v", err)
	}

	// /reinitialize keeps registered containers steered to their host.
	e.mustCall(http.StatusOK, "POST", "/reinitialize", "{}")
	av, err := c.Address(bg(), mustAddr(web.IP))
	if err != nil || av.Forward == nil || av.Forward.PortName != testbed.HostB || av.Forward.DstMAC != web.MAC {
		t.Fatalf("after /reinitialize: %+v %v", av, err)
	}

	// Release frees the name and the address and removes the switch entry.
	if _, err := c.Release(bg(), "web", testbed.HostB); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Address(bg(), mustAddr(web.IP)); !errors.Is(err, controller.ErrNotFound) {
		t.Fatalf("switch entry of a released name: %v", err)
	}
	if _, err := c.Reserve(bg(), controller.NameRequest{Name: "web2", Host: testbed.HostB, IP: web.IP}); err != nil {
		t.Fatalf("reuse of a released address: %v", err)
	}
	if _, err := c.Release(bg(), "nobody", ""); !errors.Is(err, controller.ErrNotFound) {
		t.Fatalf("release of an unknown name: %v", err)
	}
}
