package controller

import (
	"net/http"
	"net/netip"
	"runtime"
	"strconv"

	"github.com/containerflow/containerflow/internal/dataplane"
)

// Reads come from the data plane itself, not from the desired state, so
// they show what packets see, with live counters.

func (c *Controller) getHealth(*http.Request) (int, any, error) {
	return http.StatusOK, c.Health(), nil
}

// Health reports the controller's view of the switch.
func (c *Controller) Health() Health {
	c.mu.Lock()
	h := Health{Status: "ok", Pinned: c.dp.Pinned(), Addresses: len(c.state.Addresses),
		Services: len(c.state.Services), Problems: append([]string(nil), c.problems...), Goroutines: runtime.NumGoroutine()}
	c.mu.Unlock()
	ports, err := c.dp.Ports()
	if err != nil {
		h.Problems = append(h.Problems, "list ports: "+err.Error())
	}
	h.Ports = len(ports)
	if len(ports) != len(c.cfg.Ports) {
		h.Problems = append(h.Problems, strconv.Itoa(len(ports))+" of "+strconv.Itoa(len(c.cfg.Ports))+" configured ports attached")
	}
	if len(h.Problems) > 0 {
		h.Status = "degraded"
	}
	return h
}

func (c *Controller) portViews() ([]PortView, error) {
	ports, err := c.dp.Ports()
	if err != nil {
		return nil, err
	}
	out := make([]PortView, 0, len(ports))
	for _, p := range ports {
		out = append(out, PortView{Number: p.Number, Name: c.ports.name(p.Number), Interface: p.Name,
			Ifindex: p.Ifindex, Mode: p.Mode, RxPackets: p.Counters.RxPackets, RxBytes: p.Counters.RxBytes,
			TxPackets: p.Counters.TxPackets, TxBytes: p.Counters.TxBytes, RxDropped: p.Counters.RxDropped})
	}
	return out, nil
}

func (c *Controller) getPorts(*http.Request) (int, any, error) {
	ps, err := c.portViews()
	return http.StatusOK, ps, err
}

func (c *Controller) addressView(a dataplane.Address) AddressView {
	return AddressView{IP: a.Addr.String(), AddressSpec: specOfAddress(c.ports, a.AddressEntry),
		Counters: AddressCounters{Packets: a.Counters.Packets, Bytes: a.Counters.Bytes, ARPPackets: a.Counters.ARPPackets}}
}

func (c *Controller) getAddresses(*http.Request) (int, any, error) {
	as, err := c.dp.Addresses()
	if err != nil {
		return 0, nil, err
	}
	out := make([]AddressView, 0, len(as))
	for _, a := range as {
		out = append(out, c.addressView(a))
	}
	return http.StatusOK, out, nil
}

func (c *Controller) getAddress(r *http.Request) (int, any, error) {
	ip, err := parseIPv4("ip", r.PathValue("ip"))
	if err != nil {
		return 0, nil, err
	}
	a, err := c.dp.Address(ip)
	if err != nil {
		return 0, nil, errField(ErrNotFound, "ip", "no entry for %s", ip)
	}
	return http.StatusOK, c.addressView(a), nil
}

func (c *Controller) getForward(*http.Request) (int, any, error) {
	as, err := c.dp.Addresses()
	if err != nil {
		return 0, nil, err
	}
	out := []ForwardView{}
	for _, a := range as {
		if f := a.Forward; f != nil {
			out = append(out, ForwardView{IP: a.Addr.String(), Port: f.Port, PortName: c.ports.name(f.Port),
				DstMAC: macString(f.DstMAC), Packets: a.Counters.Packets, Bytes: a.Counters.Bytes})
		}
	}
	return http.StatusOK, out, nil
}

func (c *Controller) getARP(*http.Request) (int, any, error) {
	as, err := c.dp.Addresses()
	if err != nil {
		return 0, nil, err
	}
	out := []ARPView{}
	for _, a := range as {
		if v := a.ARP; v != nil {
			out = append(out, ARPView{IP: a.Addr.String(), Port: v.Port, PortName: c.ports.name(v.Port),
				ReplyMAC: macString(v.ReplyMAC), Packets: a.Counters.ARPPackets})
		}
	}
	return http.StatusOK, out, nil
}

func serviceView(s dataplane.Service) ServiceView {
	return ServiceView{ServiceSpec: ServiceSpec{ServiceRef: refOf(s.ServiceKey), Members: specOfMembers(s.Members)},
		Counters: ServiceCounters{Packets: s.Counters.Packets, Bytes: s.Counters.Bytes, NewFlows: s.Counters.NewFlows}}
}

func (c *Controller) getServices(*http.Request) (int, any, error) {
	ss, err := c.dp.Services()
	if err != nil {
		return 0, nil, err
	}
	out := make([]ServiceView, 0, len(ss))
	for _, s := range ss {
		out = append(out, serviceView(s))
	}
	return http.StatusOK, out, nil
}

// serviceFromPath reads /v1/services/{proto}/{vip}/{port}.
func serviceFromPath(r *http.Request) (ServiceRef, dataplane.ServiceKey, error) {
	port, err := strconv.ParseUint(r.PathValue("port"), 10, 16)
	if err != nil {
		return ServiceRef{}, dataplane.ServiceKey{}, errField(ErrInvalid, "port", "%q is not a port number", r.PathValue("port"))
	}
	ref := ServiceRef{VIP: r.PathValue("vip"), Port: uint16(port), Proto: r.PathValue("proto")}
	key, err := resolveServiceRef("", ref)
	return ref, key, err
}

func (c *Controller) getService(r *http.Request) (int, any, error) {
	_, key, err := serviceFromPath(r)
	if err != nil {
		return 0, nil, err
	}
	s, err := c.dp.Service(key)
	if err != nil {
		return 0, nil, errField(ErrNotFound, "vip", "no service %s", key)
	}
	return http.StatusOK, serviceView(s), nil
}

// flowFilter reads the optional vip=, member= and client= query filters
// (addresses; a flow matches when every given one is its address).
func flowFilter(r *http.Request) (func(dataplane.Flow) bool, error) {
	var want [3]netip.Addr
	for i, name := range []string{"vip", "member", "client"} {
		if s := r.URL.Query().Get(name); s != "" {
			a, err := parseIPv4(name, s)
			if err != nil {
				return nil, err
			}
			want[i] = a
		}
	}
	return func(f dataplane.Flow) bool {
		got := [3]netip.Addr{f.VIP.Addr(), f.Member.Addr(), f.Client.Addr()}
		for i := range want {
			if want[i].IsValid() && want[i] != got[i] {
				return false
			}
		}
		return true
	}, nil
}

func (c *Controller) getConntrack(r *http.Request) (int, any, error) {
	match, err := flowFilter(r)
	if err != nil {
		return 0, nil, err
	}
	flows, err := c.dp.Conntrack()
	if err != nil {
		return 0, nil, err
	}
	out := []FlowView{}
	for _, f := range flows {
		if match(f) {
			out = append(out, FlowView{Proto: f.Proto.String(), Client: f.Client.String(), VIP: f.VIP.String(),
				Member: f.Member.String(), Packets: f.Packets, Bytes: f.Bytes, IdleMS: f.Idle.Milliseconds()})
		}
	}
	return http.StatusOK, out, nil
}

func (c *Controller) getCounters(*http.Request) (int, any, error) {
	ps, err := c.portViews()
	if err != nil {
		return 0, nil, err
	}
	cs, err := c.dp.Counters()
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, Counters{Ports: ps, Global: cs.Global}, nil
}

// FloodSetting is the body of GET and PUT /v1/flood.
type FloodSetting struct {
	Enabled *bool `json:"enabled"`
}

func (c *Controller) getFlood(*http.Request) (int, any, error) {
	on, err := c.dp.Flood()
	return http.StatusOK, FloodSetting{Enabled: &on}, err
}

// StateView is the desired state as stored (GET /v1/state).
type StateView struct {
	FloodARP  bool            `json:"flood_arp"`
	Addresses []AddressConfig `json:"addresses"`
	Services  []ServiceSpec   `json:"services"`
}

func (c *Controller) stateView(st *State) StateView {
	v := StateView{FloodARP: st.Flood, Addresses: []AddressConfig{}, Services: []ServiceSpec{}}
	for _, ip := range st.sortedAddrs() {
		v.Addresses = append(v.Addresses, AddressConfig{IP: ip.String(), AddressSpec: specOfAddress(c.ports, st.Addresses[ip])})
	}
	for _, k := range st.sortedServices() {
		v.Services = append(v.Services, ServiceSpec{ServiceRef: refOf(k), Members: specOfMembers(st.Services[k])})
	}
	return v
}

func (c *Controller) getState(*http.Request) (int, any, error) {
	return http.StatusOK, c.stateView(c.State()), nil
}
