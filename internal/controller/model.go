package controller

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// The API's JSON types. Addresses and MACs travel as strings and are parsed
// by the controller (resolve.go), so that an error can name the field it is
// about; ports may be given by number or by their configured name.

// PortRef names a switch port: a number (1..64), a numeric string, or the
// port's name from the configuration ("hostA").
type PortRef string

// PortNum returns a PortRef for a port number.
func PortNum(n uint32) PortRef { return PortRef(strconv.FormatUint(uint64(n), 10)) }

// UnmarshalJSON accepts a JSON number or string.
func (p *PortRef) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*p = PortRef(s)
		return nil
	}
	if bytes.Equal(b, []byte("null")) {
		*p = ""
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return errField(ErrInvalid, "port", "want a port number or name, got %s", b)
	}
	*p = PortRef(n.String())
	return nil
}

// MarshalJSON writes numeric references as numbers and names as strings.
func (p PortRef) MarshalJSON() ([]byte, error) {
	if _, err := strconv.ParseUint(string(p), 10, 32); err == nil {
		return []byte(p), nil
	}
	return json.Marshal(string(p))
}

// ForwardSpec is the forward view of an address: IPv4 packets to it leave
// through Port; with DstMAC the switch routes (destination MAC rewritten,
// TTL decremented).
type ForwardSpec struct {
	Port     PortRef `json:"port"`
	PortName string  `json:"port_name,omitempty"` // in answers only
	DstMAC   string  `json:"dst_mac,omitempty"`
}

// ARPSpec is the arp_forward view of an address: ARP for it leaves through
// Port, or (ReplyMAC, no Port) the switch answers ARP requests itself.
type ARPSpec struct {
	Port     PortRef `json:"port,omitempty"`
	PortName string  `json:"port_name,omitempty"` // in answers only
	ReplyMAC string  `json:"reply_mac,omitempty"`
}

// AddressSpec is one entry of the address table: its two views, either
// of which may be absent.
type AddressSpec struct {
	Forward *ForwardSpec `json:"forward,omitempty"`
	ARP     *ARPSpec     `json:"arp,omitempty"`
}

// AddressView is an address table entry as read, with its counters.
type AddressView struct {
	IP string `json:"ip"`
	AddressSpec
	Counters AddressCounters `json:"counters"`
}

// AddressCounters count the packets that used an entry.
type AddressCounters struct {
	Packets    uint64 `json:"packets"`
	Bytes      uint64 `json:"bytes"`
	ARPPackets uint64 `json:"arp_packets"`
}

// ForwardView is a row of the forward table view.
type ForwardView struct {
	IP       string `json:"ip"`
	Port     uint32 `json:"port"`
	PortName string `json:"port_name,omitempty"`
	DstMAC   string `json:"dst_mac,omitempty"`
	Packets  uint64 `json:"packets"`
	Bytes    uint64 `json:"bytes"`
}

// ARPView is a row of the arp_forward table view.
type ARPView struct {
	IP       string `json:"ip"`
	Port     uint32 `json:"port,omitempty"`
	PortName string `json:"port_name,omitempty"`
	ReplyMAC string `json:"reply_mac,omitempty"`
	Packets  uint64 `json:"packets"`
}

// MoveRequest moves both views of an address to one port in one step.
type MoveRequest struct {
	Port   PortRef `json:"port"`
	DstMAC string  `json:"dst_mac,omitempty"`
}

// ServiceRef identifies a load-balanced service.
type ServiceRef struct {
	VIP   string `json:"vip"`
	Port  uint16 `json:"port"`
	Proto string `json:"proto"`
}

// MemberSpec is a backend of a service. Port 0 keeps the service's port;
// State is "active" (default) or "draining".
type MemberSpec struct {
	Addr  string `json:"addr"`
	Port  uint16 `json:"port,omitempty"`
	State string `json:"state,omitempty"`
}

// ServiceSpec is a service with its members.
type ServiceSpec struct {
	ServiceRef
	Members []MemberSpec `json:"members"`
}

// ServiceView is a service as read, with its counters.
type ServiceView struct {
	ServiceSpec
	Counters ServiceCounters `json:"counters"`
}

// ServiceCounters count a service's traffic.
type ServiceCounters struct {
	Packets  uint64 `json:"packets"`
	Bytes    uint64 `json:"bytes"`
	NewFlows uint64 `json:"new_flows"`
}

// FlowView is a connection-table entry.
type FlowView struct {
	Proto   string `json:"proto"`
	Client  string `json:"client"`
	VIP     string `json:"vip"`
	Member  string `json:"member"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
	IdleMS  int64  `json:"idle_ms"`
}

// PortView is an attached switch port with its counters.
type PortView struct {
	Number    uint32 `json:"number"`
	Name      string `json:"name,omitempty"`
	Interface string `json:"interface"`
	Ifindex   int    `json:"ifindex"`
	Mode      string `json:"mode"`
	RxPackets uint64 `json:"rx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxPackets uint64 `json:"tx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
	RxDropped uint64 `json:"rx_dropped"`
}

// Counters are the port and global counters.
type Counters struct {
	Ports  []PortView        `json:"ports"`
	Global map[string]uint64 `json:"global"`
}

// Health is the answer of GET /v1/health.
type Health struct {
	Status    string   `json:"status"` // "ok" or "degraded"
	Pinned    bool     `json:"pinned"`
	Ports     int      `json:"ports"`
	Addresses int      `json:"addresses"`
	Services  int      `json:"services"`
	Problems  []string `json:"problems,omitempty"`
	// Goroutines lets a long run see a leak from outside the process.
	Goroutines int `json:"goroutines"`
}

// Op is one change of a batch (POST /v1/batch). Op selects the kind and
// which other fields are used:
//
//	set_address      ip, forward and/or arp        create or replace an entry
//	add_address      ip, forward and/or arp        create; 409 if it exists differently
//	move_address     ip, port, dst_mac?            both views to one port
//	delete_address   ip
//	set_service      service (with members)        create or replace
//	delete_service   service
//	set_member       service, member               add or replace one member
//	delete_member    service, member (addr)
//	readdress_member old, new                      the seed's /migrateNode
//	set_flood        flood
type Op struct {
	Op      string       `json:"op"`
	IP      string       `json:"ip,omitempty"`
	Forward *ForwardSpec `json:"forward,omitempty"`
	ARP     *ARPSpec     `json:"arp,omitempty"`
	Port    PortRef      `json:"port,omitempty"`
	DstMAC  string       `json:"dst_mac,omitempty"`
	Service *ServiceSpec `json:"service,omitempty"`
	Member  *MemberSpec  `json:"member,omitempty"`
	Old     string       `json:"old,omitempty"`
	New     string       `json:"new,omitempty"`
	Flood   *bool        `json:"flood,omitempty"`
}

// Batch is the body of POST /v1/batch.
type Batch struct {
	Ops []Op `json:"ops"`
}

// BatchResult is the answer to a successful batch.
type BatchResult struct {
	Applied int `json:"applied"`
}

// Status is the seed endpoints' success answer.
type Status struct {
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

// ErrorBody is every error answer.
type ErrorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}
