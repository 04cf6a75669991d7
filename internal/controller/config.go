package controller

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/containerflow/containerflow/internal/dataplane"
)

// Config is the controller's configuration file (YAML or JSON): the ports
// to attach and the initial table entries, which are applied on the first
// start (an empty store) and by /reinitialize.
//
// The seed's controller configuration is accepted as well: a JSON array of
// switch entries (the one with "master": true is used, its "id",
// "client_id", "addr", "name" and "port_setup" are ignored), with
// "load_balancer_ip", "service_port" and "nodes" ({ipv4, sw_port, dst_mac,
// is_lb_node}). Its ports still have to be given (the "ports" key or
// --port flags), since the seed's port numbers name Tofino ports.
type Config struct {
	// Ports to attach: number (1..64), interface in the switch namespace,
	// optional name used by the API and by agents ("hostA").
	Ports []PortConfig `json:"ports,omitempty"`
	// FloodARP floods ARP for unknown targets (default true).
	FloodARP *bool `json:"flood_arp,omitempty"`
	// Addresses are initial address-table entries.
	Addresses []AddressConfig `json:"addresses,omitempty"`
	// Services are initial load-balanced services.
	Services []ServiceSpec `json:"services,omitempty"`
	// ContainerNet is the prefix container addresses belong to (e.g.
	// 198.18.0.0/24): the name registry allocates addresses from it and
	// refuses addresses outside it. Empty: any IPv4 address is accepted
	// and nothing is allocated.
	ContainerNet string `json:"container_net,omitempty"`

	// The seed's keys. load_balancer_ip with service_port makes a TCP
	// service whose members are the nodes with is_lb_node; the VIP answers
	// ARP with vip_mac (default 02:cf + the VIP's four bytes).
	LoadBalancerIP string     `json:"load_balancer_ip,omitempty"`
	ServicePort    uint16     `json:"service_port,omitempty"`
	VIPMAC         string     `json:"vip_mac,omitempty"`
	Nodes          []SeedNode `json:"nodes,omitempty"`

	// Ignored keys of the seed's file, listed so that unknown keys can be
	// refused (a typo should not silently drop configuration).
	SeedID        json.RawMessage `json:"id,omitempty"`
	SeedClientID  json.RawMessage `json:"client_id,omitempty"`
	SeedName      json.RawMessage `json:"name,omitempty"`
	SeedAddr      json.RawMessage `json:"addr,omitempty"`
	SeedMaster    json.RawMessage `json:"master,omitempty"`
	SeedPortSetup json.RawMessage `json:"port_setup,omitempty"`
}

// PortConfig is one switch port.
type PortConfig struct {
	Number    uint32 `json:"number"`
	Interface string `json:"interface"`
	Name      string `json:"name,omitempty"`
}

// AddressConfig is an initial address entry: ip plus the entry's views.
type AddressConfig struct {
	IP string `json:"ip"`
	AddressSpec
}

// SeedNode is a node of the seed's configuration: forward and arp_forward
// entries to sw_port (forward with dst_mac rewrite if given); is_lb_node
// makes it a member of the load_balancer_ip service.
type SeedNode struct {
	IPv4     string  `json:"ipv4"`
	SwPort   PortRef `json:"sw_port"`
	DstMAC   string  `json:"dst_mac,omitempty"`
	IsLBNode bool    `json:"is_lb_node,omitempty"`
	MAC      string  `json:"mac,omitempty"` // seed: source MAC, unused
}

// LoadConfig reads a configuration file.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig parses a configuration in YAML or JSON.
func ParseConfig(b []byte) (*Config, error) {
	js, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	js = bytes.TrimSpace(js)
	if len(js) > 0 && js[0] == '[' {
		if js, err = seedMaster(js); err != nil {
			return nil, err
		}
	}
	c := &Config{}
	if len(js) == 0 || bytes.Equal(js, []byte("null")) {
		return c, nil
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return c, nil
}

// seedMaster picks the master entry of a seed-style array of switches.
func seedMaster(js []byte) ([]byte, error) {
	var entries []json.RawMessage
	if err := json.Unmarshal(js, &entries); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if len(entries) == 1 {
		return entries[0], nil
	}
	var found []byte
	for i, e := range entries {
		var m struct {
			Master bool `json:"master"`
		}
		if err := json.Unmarshal(e, &m); err != nil {
			return nil, fmt.Errorf("%w: [%d]: %v", ErrInvalid, i, err)
		}
		if m.Master {
			if found != nil {
				return nil, fmt.Errorf("%w: more than one switch entry has master: true", ErrInvalid)
			}
			found = e
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: %d switch entries and none has master: true", ErrInvalid, len(entries))
	}
	return found, nil
}

// ParsePortFlag parses "N=IFNAME" or "N=IFNAME:NAME" (the --port flag).
func ParsePortFlag(s string) (PortConfig, error) {
	num, rest, ok := strings.Cut(s, "=")
	if !ok || rest == "" {
		return PortConfig{}, fmt.Errorf("%w: port %q: want N=IFNAME[:NAME]", ErrInvalid, s)
	}
	n, err := strconv.ParseUint(num, 10, 32)
	if err != nil {
		return PortConfig{}, fmt.Errorf("%w: port %q: %q is not a number", ErrInvalid, s, num)
	}
	ifname, name, _ := strings.Cut(rest, ":")
	return PortConfig{Number: uint32(n), Interface: ifname, Name: name}, nil
}

// validatePorts checks numbers, interfaces and names for range and
// uniqueness. Names must not be numbers (they would read as numbers).
func validatePorts(ports []PortConfig) error {
	nums, ifs, names := map[uint32]bool{}, map[string]bool{}, map[string]bool{}
	for i, p := range ports {
		f := fmt.Sprintf("ports[%d]", i)
		switch {
		case p.Number < 1 || p.Number > uint32(dataplane.MaxPorts):
			return errField(ErrInvalid, f+".number", "%d out of range 1..%d", p.Number, dataplane.MaxPorts)
		case nums[p.Number]:
			return errField(ErrConflict, f+".number", "port %d given twice", p.Number)
		case p.Interface == "":
			return errField(ErrInvalid, f+".interface", "missing")
		case ifs[p.Interface]:
			return errField(ErrConflict, f+".interface", "%s given twice", p.Interface)
		case p.Name != "" && names[p.Name]:
			return errField(ErrConflict, f+".name", "%s given twice", p.Name)
		}
		if _, err := strconv.ParseUint(p.Name, 10, 32); err == nil {
			return errField(ErrInvalid, f+".name", "%q: a port name must not be a number", p.Name)
		}
		nums[p.Number], ifs[p.Interface] = true, true
		if p.Name != "" {
			names[p.Name] = true
		}
	}
	return nil
}

// initialState builds the configured initial tables, validating every
// entry (errors name the key, e.g. "nodes[1].dst_mac").
func (c *Config) initialState(pt *portTable) (*State, error) {
	st := newState()
	if c.FloodARP != nil {
		st.Flood = *c.FloodARP
	}
	var ops []Op
	var fields []string
	for i, a := range c.Addresses {
		ops = append(ops, Op{Op: "add_address", IP: a.IP, Forward: a.Forward, ARP: a.ARP})
		fields = append(fields, fmt.Sprintf("addresses[%d]", i))
	}
	var lbMembers []MemberSpec
	for i, n := range c.Nodes {
		ops = append(ops, Op{Op: "add_address", IP: n.IPv4,
			Forward: &ForwardSpec{Port: n.SwPort, DstMAC: n.DstMAC}, ARP: &ARPSpec{Port: n.SwPort}})
		fields = append(fields, fmt.Sprintf("nodes[%d]", i))
		if n.IsLBNode {
			lbMembers = append(lbMembers, MemberSpec{Addr: n.IPv4})
		}
	}
	for i, s := range c.Services {
		s := s
		ops = append(ops, Op{Op: "set_service", Service: &s})
		fields = append(fields, fmt.Sprintf("services[%d]", i))
	}
	if c.LoadBalancerIP != "" {
		mac := c.VIPMAC
		if mac == "" {
			if vip, err := parseIPv4("load_balancer_ip", c.LoadBalancerIP); err == nil {
				b := vip.As4()
				mac = net.HardwareAddr{0x02, 0xcf, b[0], b[1], b[2], b[3]}.String()
			}
		}
		ops = append(ops,
			Op{Op: "add_address", IP: c.LoadBalancerIP, ARP: &ARPSpec{ReplyMAC: mac}},
			Op{Op: "set_service", Service: &ServiceSpec{
				ServiceRef: ServiceRef{VIP: c.LoadBalancerIP, Port: c.ServicePort, Proto: "tcp"},
				Members:    lbMembers,
			}})
		fields = append(fields, "load_balancer_ip", "service_port")
	} else if len(lbMembers) > 0 {
		return nil, errField(ErrInvalid, "load_balancer_ip", "nodes with is_lb_node need a load_balancer_ip")
	}
	for i, op := range ops {
		_, next, err := plan(pt, st, []Op{op}, false)
		if err != nil {
			var fe *fieldError
			if errors.As(err, &fe) {
				fe.field = strings.TrimSuffix(fields[i]+"."+fe.field, ".")
			}
			return nil, err
		}
		st = next
	}
	return st, nil
}
