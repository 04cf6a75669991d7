package controller_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/containerflow/containerflow/internal/controller"
	"github.com/containerflow/containerflow/internal/testbed"
)

func TestRESTReadsAndWrites(t *testing.T) {
	e := newEnv(t, nil)
	// Some traffic so that counters move.
	e.udpCount(netip.AddrPortFrom(testbed.Nodes[0].DataIP, 9), 5)

	h := decodeAs[controller.Health](t, e.mustCall(http.StatusOK, "GET", "/v1/health", ""))
	if h.Status != "ok" || !h.Pinned || h.Ports != 3 || h.Addresses != 3 {
		t.Errorf("health %+v", h)
	}
	ports := decodeAs[[]controller.PortView](t, e.mustCall(http.StatusOK, "GET", "/v1/ports", ""))
	if len(ports) != 3 || ports[0].Name != "hostA" || ports[0].Interface != "sw-hostA" || ports[2].RxPackets == 0 {
		t.Errorf("ports %+v", ports)
	}
	addrs := decodeAs[[]controller.AddressView](t, e.mustCall(http.StatusOK, "GET", "/v1/addresses", ""))
	if len(addrs) != 3 || addrs[0].Counters.Packets == 0 {
		t.Errorf("addresses %+v", addrs)
	}
	fwd := decodeAs[[]controller.ForwardView](t, e.mustCall(http.StatusOK, "GET", "/v1/forward", ""))
	arp := decodeAs[[]controller.ARPView](t, e.mustCall(http.StatusOK, "GET", "/v1/arp", ""))
	if len(fwd) != 3 || len(arp) != 3 || fwd[0].PortName != "hostA" || arp[0].Packets == 0 {
		t.Errorf("forward %+v arp %+v", fwd, arp)
	}

	// Create, read, replace, delete an address.
	b := e.mustCall(http.StatusOK, "PUT", "/v1/addresses/198.18.0.70", `{"forward":{"port":"hostB","dst_mac":"02:42:c6:12:00:46"},"arp":{"port":2}}`)
	a := decodeAs[controller.AddressView](t, b)
	if a.Forward.Port != "2" || a.Forward.PortName != "hostB" || a.Forward.DstMAC != "02:42:c6:12:00:46" || a.ARP.Port != "2" {
		t.Errorf("put answer %s", b)
	}
	e.mustCall(http.StatusOK, "PUT", "/v1/addresses/198.18.0.70", `{"arp":{"reply_mac":"02:42:c6:12:00:47"}}`)
	a = decodeAs[controller.AddressView](t, e.mustCall(http.StatusOK, "GET", "/v1/addresses/198.18.0.70", ""))
	if a.Forward != nil || a.ARP == nil || a.ARP.ReplyMAC != "02:42:c6:12:00:47" {
		t.Errorf("replaced entry %+v", a)
	}
	e.mustCall(http.StatusOK, "POST", "/v1/addresses/198.18.0.70/move", `{"port":"hostA"}`)
	e.mustCall(http.StatusOK, "DELETE", "/v1/addresses/198.18.0.70", "")
	e.mustCall(http.StatusNotFound, "GET", "/v1/addresses/198.18.0.70", "")
	e.mustCall(http.StatusNotFound, "DELETE", "/v1/addresses/198.18.0.70", "")

	// Services and members.
	svc := "/v1/services/tcp/198.18.0.80/80"
	e.mustCall(http.StatusOK, "PUT", svc, `{"members":[{"addr":"198.18.0.11"},{"addr":"198.18.0.12","port":8080,"state":"draining"}]}`)
	sv := decodeAs[controller.ServiceView](t, e.mustCall(http.StatusOK, "PUT", svc+"/members/198.18.0.13", `{"state":"active"}`))
	if len(sv.Members) != 3 {
		t.Errorf("members after add %+v", sv.Members)
	}
	sv = decodeAs[controller.ServiceView](t, e.mustCall(http.StatusOK, "DELETE", svc+"/members/198.18.0.11", ""))
	if len(sv.Members) != 2 || sv.Members[0].Addr != "198.18.0.12" || sv.Members[0].State != "draining" {
		t.Errorf("members after delete %+v", sv.Members)
	}
	e.mustCall(http.StatusOK, "POST", "/v1/members/readdress", `{"old":"198.18.0.13","new":"198.18.0.14"}`)
	svs := decodeAs[[]controller.ServiceView](t, e.mustCall(http.StatusOK, "GET", "/v1/services", ""))
	if len(svs) != 1 || svs[0].Members[1].Addr != "198.18.0.14" {
		t.Errorf("services %+v", svs)
	}
	e.mustCall(http.StatusOK, "GET", svc, "")
	e.mustCall(http.StatusOK, "DELETE", svc, "")
	e.mustCall(http.StatusNotFound, "GET", svc, "")

	// Flood setting, conntrack, counters, state, metrics.
	e.mustCall(http.StatusOK, "PUT", "/v1/flood", `{"enabled":false}`)
	if on, _ := e.ctl.Dataplane().Flood(); on {
		t.Error("flood still on")
	}
	e.mustCall(http.StatusOK, "PUT", "/v1/flood", `{"enabled":true}`)
	e.mustCall(http.StatusOK, "GET", "/v1/conntrack", "")
	e.mustCall(http.StatusOK, "DELETE", "/v1/conntrack?vip=198.18.0.80", "")
	cs := decodeAs[controller.Counters](t, e.mustCall(http.StatusOK, "GET", "/v1/counters", ""))
	if len(cs.Ports) != 3 || cs.Global["switched"] == 0 {
		t.Errorf("counters %+v", cs)
	}
	st := decodeAs[controller.StateView](t, e.mustCall(http.StatusOK, "GET", "/v1/state", ""))
	if len(st.Addresses) != 3 || len(st.Services) != 0 || !st.FloodARP {
		t.Errorf("state %+v", st)
	}
	m := string(e.mustCall(http.StatusOK, "GET", "/metrics", ""))
	for _, want := range []string{`cflow_switch_port_rx_packets_total{port="1",name="hostA",interface="sw-hostA"}`,
		`cflow_switch_packets_total{reason="no_route"}`, `cflow_switch_api_write_seconds_count`,
		`cflow_switch_address_packets_total{ip="198.18.0.11"}`, `cflow_switch_api_requests_total{endpoint="PUT /v1/addresses/{ip}",code="200"}`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	e.mustCall(http.StatusNotFound, "GET", "/v1/nothing", "")

	// The Go client maps errors back to the sentinels.
	if _, err := e.c.Address(bg(), netip.MustParseAddr("198.18.0.99")); !errors.Is(err, controller.ErrNotFound) {
		t.Errorf("client error %v, want ErrNotFound", err)
	}
}

func TestAuth(t *testing.T) {
	e := newEnv(t, nil)
	body := `{"forward":{"port":1},"arp":{"port":1}}`
	for _, tok := range []string{"", "wrong"} {
		code, b := e.call("PUT", "/v1/addresses/198.18.0.71", body, tok)
		if code != http.StatusUnauthorized || !strings.Contains(string(b), "Bearer") {
			t.Errorf("token %q: HTTP %d %s", tok, code, b)
		}
		code, _ = e.call("POST", "/updateForward", `{"ipv4":"198.18.0.71","sw_port":1}`, tok)
		if code != http.StatusUnauthorized {
			t.Errorf("seed write with token %q: HTTP %d", tok, code)
		}
	}
	if _, err := e.c.Address(bg(), netip.MustParseAddr("198.18.0.71")); !errors.Is(err, controller.ErrNotFound) {
		t.Fatalf("an unauthorised write landed: %v", err)
	}
	// Reads need no token.
	for _, p := range []string{"/v1/health", "/v1/addresses", "/v1/services", "/metrics"} {
		if code, _ := e.call("GET", p, "", ""); code != http.StatusOK {
			t.Errorf("GET %s without token: HTTP %d", p, code)
		}
	}
	e.mustCall(http.StatusOK, "PUT", "/v1/addresses/198.18.0.71", body)

	// No token and no explicit --no-auth: refused at start.
	opts := e.options()
	opts.Token = ""
	if _, err := controller.New(opts); err == nil {
		t.Fatal("a controller without token and without NoAuth started")
	}
	// --no-auth: writes without a token are accepted.
	e.stop()
	opts.NoAuth = true
	ctl, err := controller.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	srv := httptest.NewServer(ctl.Handler())
	defer srv.Close()
	req, _ := http.NewRequest("DELETE", srv.URL+"/v1/addresses/198.18.0.71", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("write without token under NoAuth: HTTP %d", resp.StatusCode)
	}
}
