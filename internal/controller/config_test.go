package controller

import (
	"errors"
	"strings"
	"testing"
)

// The seed's hardware configuration, as its repository ships it (a JSON
// array of switches), with ports that exist here.
const seedConfig = `[
  {
    "id": 0, "client_id": 0, "name": "tna_load_balancer", "addr": "127.0.0.1:50052", "master": true,
    "load_balancer_ip": "192.168.12.10", "service_port": 8080,
    "port_setup": [{"dev_port": 140, "speed": "BF_SPEED_25G"}],
    "ports": [{"number": 1, "interface": "sw-a", "name": "lakewood"}, {"number": 2, "interface": "sw-b", "name": "loveland"}],
    "nodes": [
      {"ipv4": "192.168.12.100", "sw_port": 1, "dst_mac": "02:42:c0:a8:0c:64"},
      {"ipv4": "192.168.12.2", "is_lb_node": true, "sw_port": "loveland", "dst_mac": "02:42:c0:a8:0c:02"}
    ]
  }
]`

const yamlConfig = `
ports:
  - {number: 1, interface: sw-hostA, name: hostA}
  - {number: 2, interface: sw-hostB, name: hostB}
flood_arp: false
addresses:
  - ip: 198.18.0.11
    forward: {port: hostA}
    arp: {port: hostA}
  - ip: 198.18.0.50
    arp: {reply_mac: "02:cf:00:00:00:50"}
services:
  - vip: 198.18.0.50
    port: 80
    proto: tcp
    members:
      - {addr: 198.18.0.11, port: 8080}
      - {addr: 198.18.0.12, state: draining}
`

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte(seedConfig))
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.initialState(newPortTable(c.Ports))
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Addresses) != 3 || len(st.Services) != 1 {
		t.Fatalf("seed config: %d addresses, %d services", len(st.Addresses), len(st.Services))
	}
	for k, ms := range st.Services {
		if k.String() != "192.168.12.10:8080/tcp" || len(ms) != 1 || ms[0].Addr.String() != "192.168.12.2" {
			t.Errorf("seed service %s %v", k, ms)
		}
	}

	c, err = ParseConfig([]byte(yamlConfig))
	if err != nil {
		t.Fatal(err)
	}
	st, err = c.initialState(newPortTable(c.Ports))
	if err != nil {
		t.Fatal(err)
	}
	if st.Flood || len(st.Addresses) != 2 || len(st.Services) != 1 {
		t.Fatalf("yaml config: %+v", st)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	for _, c := range []struct{ cfg, want string }{
		{"ports: [{number: 1, interface: a}, {number: 1, interface: b}]", "ports[1].number"},
		{"ports: [{number: 65, interface: a}]", "ports[0].number"},
		{"ports: [{number: 1, interface: a, name: \"7\"}]", "ports[0].name"},
		{"ports: [{number: 1, interface: a}]\naddresses: [{ip: 1.2.3.4, forward: {port: 2}}]", "addresses[0].forward.port"},
		{"ports: [{number: 1, interface: a}]\nnodes: [{ipv4: 1.2.3.4, sw_port: 1, dst_mac: zz}]", "nodes[0].forward.dst_mac"},
		{"ports: [{number: 1, interface: a}]\nnodes: [{ipv4: 1.2.3.4, sw_port: 1, is_lb_node: true}]", "load_balancer_ip"},
		{"portz: []", "unknown field"},
		{"[{\"master\": false}, {\"master\": false}]", "master"},
	} {
		cfg, err := ParseConfig([]byte(c.cfg))
		if err == nil {
			if err = validatePorts(cfg.Ports); err == nil {
				_, err = cfg.initialState(newPortTable(cfg.Ports))
			}
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one naming %s", c.cfg, err, c.want)
		}
		if err != nil && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrConflict) {
			t.Errorf("%q: error %v wraps no sentinel", c.cfg, err)
		}
	}
	if p, err := ParsePortFlag("3=sw-client:client"); err != nil || p.Number != 3 || p.Interface != "sw-client" || p.Name != "client" {
		t.Errorf("port flag: %+v %v", p, err)
	}
	if _, err := ParsePortFlag("x=sw"); err == nil {
		t.Error("bad port flag accepted")
	}
}
