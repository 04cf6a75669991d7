package controller_test

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/containerflow/containerflow/internal/testbed"
)

// Every kind of bad input is refused with its status and a JSON error
// naming the field; nothing changes, and the switch keeps forwarding.
func TestBadInput(t *testing.T) {
	e := newEnv(t, nil)
	e.mustCall(http.StatusOK, "PUT", "/v1/services/tcp/198.18.0.80/80", `{"members":[{"addr":"198.18.0.11"}]}`)
	before := e.tables()
	cases := []struct {
		name, method, path, body string
		code                     int
		field                    string
	}{
		{"malformed JSON", "PUT", "/v1/addresses/198.18.0.5", `{"forward":{"port":1}`, 400, "body"},
		{"not JSON", "POST", "/updateForward", `ipv4=198.18.0.5`, 400, "body"},
		{"empty body", "PUT", "/v1/addresses/198.18.0.5", ``, 400, "body"},
		{"unknown field", "PUT", "/v1/addresses/198.18.0.5", `{"forwrd":{"port":1}}`, 400, "forwrd"},
		{"wrong type", "PUT", "/v1/services/tcp/198.18.0.80/80", `{"members":[{"addr":"198.18.0.11","port":"x"}]}`, 400, "members.port"},
		{"port out of uint16", "PUT", "/v1/services/tcp/198.18.0.80/80", `{"members":[{"addr":"198.18.0.11","port":70000}]}`, 400, "members.port"},
		{"bad IPv4 in path", "PUT", "/v1/addresses/198.18.0.500", `{"forward":{"port":1}}`, 400, "ip"},
		{"IPv6", "PUT", "/v1/addresses/fe80::1", `{"forward":{"port":1}}`, 400, "ip"},
		{"bad IPv4 seed", "POST", "/updateForward", `{"ipv4":"198.18.0","sw_port":1}`, 400, "ipv4"},
		{"missing ipv4 seed", "POST", "/updateForward", `{"sw_port":1}`, 400, "ipv4"},
		{"bad MAC", "POST", "/updateForward", `{"ipv4":"198.18.0.5","sw_port":1,"dst_mac":"02:42:zz:00:00:01"}`, 400, "dst_mac"},
		{"multicast MAC", "PUT", "/v1/addresses/198.18.0.5", `{"forward":{"port":1,"dst_mac":"01:00:5e:00:00:01"}}`, 400, "forward.dst_mac"},
		{"short MAC", "PUT", "/v1/addresses/198.18.0.5", `{"arp":{"reply_mac":"02:42:00:00:01"}}`, 400, "arp.reply_mac"},
		{"zero MAC", "PUT", "/v1/addresses/198.18.0.5", `{"forward":{"port":1,"dst_mac":"00:00:00:00:00:00"}}`, 400, "forward.dst_mac"},
		{"port and reply_mac", "PUT", "/v1/addresses/198.18.0.5", `{"arp":{"port":1,"reply_mac":"02:42:00:00:00:01"}}`, 400, "arp"},
		{"neither view", "PUT", "/v1/addresses/198.18.0.5", `{}`, 400, ""},
		{"unknown port number", "POST", "/updateForward", `{"ipv4":"198.18.0.5","sw_port":7}`, 404, "sw_port"},
		{"unknown port name", "PUT", "/v1/addresses/198.18.0.5", `{"forward":{"port":"hostC"}}`, 404, "forward.port"},
		{"port out of range", "POST", "/addForward", `{"dst_addr":"198.18.0.5","port":99}`, 400, "port"},
		{"port 0", "POST", "/v1/addresses/198.18.0.5/move", `{"port":0}`, 400, "port"},
		{"port as object", "POST", "/v1/addresses/198.18.0.5/move", `{"port":{}}`, 400, "port"},
		{"unknown VIP", "PUT", "/v1/services/tcp/198.18.0.81/80/members/198.18.0.12", `{}`, 404, "service"},
		{"unknown VIP delete", "DELETE", "/v1/services/udp/198.18.0.80/80", ``, 404, "service"},
		{"unknown member", "DELETE", "/v1/services/tcp/198.18.0.80/80/members/198.18.0.12", ``, 404, "member.addr"},
		{"unknown member seed", "POST", "/migrateNode", `{"old_ipv4":"198.18.0.12","new_ipv4":"198.18.0.13"}`, 404, "old_ipv4"},
		{"bad protocol", "PUT", "/v1/services/sctp/198.18.0.80/80", `{"members":[]}`, 400, "proto"},
		{"icmp with port", "PUT", "/v1/services/icmp/198.18.0.80/80", `{"members":[]}`, 400, "port"},
		{"bad member state", "PUT", "/v1/services/tcp/198.18.0.80/80", `{"members":[{"addr":"198.18.0.11","state":"gone"}]}`, 400, "members[0].state"},
		{"duplicate member", "PUT", "/v1/services/tcp/198.18.0.80/80", `{"members":[{"addr":"198.18.0.11"},{"addr":"198.18.0.11"}]}`, 409, "members[1]"},
		{"readdress onto member", "POST", "/v1/members/readdress", `{"old":"198.18.0.11","new":"198.18.0.11"}`, 200, ""},
		{"add over different entry", "POST", "/addForward", `{"dst_addr":"198.18.0.11","port":2}`, 409, "dst_addr"},
		{"unknown op", "POST", "/v1/batch", `{"ops":[{"op":"explode"}]}`, 400, "ops[0].op"},
		{"empty batch", "POST", "/v1/batch", `{"ops":[]}`, 400, "ops"},
		{"flood missing", "PUT", "/v1/flood", `{}`, 400, "enabled"},
		{"delete missing entry", "DELETE", "/v1/addresses/198.18.0.5", ``, 404, "ip"},
	}
	for _, c := range cases {
		code, b := e.call(c.method, c.path, c.body, testToken)
		if code != c.code {
			t.Errorf("%s: HTTP %d, want %d: %s", c.name, code, c.code, b)
			continue
		}
		if code == http.StatusOK {
			continue
		}
		var eb struct {
			Error string `json:"error"`
			Field string `json:"field"`
		}
		if err := json.Unmarshal(b, &eb); err != nil || eb.Error == "" {
			t.Errorf("%s: answer is not a JSON error: %s", c.name, b)
			continue
		}
		if eb.Field != c.field {
			t.Errorf("%s: field %q, want %q (%s)", c.name, eb.Field, c.field, eb.Error)
		}
		if c.field != "" && c.field != "body" && !strings.Contains(eb.Error, c.field) {
			t.Errorf("%s: message %q does not name the field %s", c.name, eb.Error, c.field)
		}
	}
	if got := e.tables(); got != before {
		t.Fatalf("bad input changed the tables:\n%s\nwas\n%s", got, before)
	}
	// The data plane kept forwarding.
	l := e.listenUDP(testbed.HostB, netip.AddrPortFrom(testbed.Nodes[1].DataIP, 9100))
	if got := e.udpCount(netip.AddrPortFrom(testbed.Nodes[1].DataIP, 9100), 20, l); got[0] != 20 {
		t.Fatalf("forwarding after bad input: %d/20", got[0])
	}
}
