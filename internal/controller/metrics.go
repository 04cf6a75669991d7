package controller

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// apiMetrics counts API requests and times writes. The Prometheus text
// format is written by hand: a few families do not justify a client
// library and its dependencies.
type apiMetrics struct {
	mu       sync.Mutex
	requests map[reqKey]uint64
	// Write latency histogram (seconds), cumulative buckets.
	buckets []float64
	counts  []uint64
	sum     float64
	count   uint64
}

type reqKey struct {
	pattern string
	code    int
}

func newAPIMetrics() *apiMetrics {
	b := []float64{50e-6, 100e-6, 200e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 50e-3, 0.1, 1}
	return &apiMetrics{requests: map[reqKey]uint64{}, buckets: b, counts: make([]uint64, len(b))}
}

func (m *apiMetrics) observe(pattern string, code int, write bool, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if pattern == "" {
		pattern = "unmatched"
	}
	m.requests[reqKey{pattern, code}]++
	if !write || code >= 300 {
		return
	}
	s := d.Seconds()
	m.sum += s
	m.count++
	for i, b := range m.buckets {
		if s <= b {
			m.counts[i]++
		}
	}
}

func (m *apiMetrics) write(w io.Writer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fmt.Fprintln(w, "# HELP cflow_switch_api_requests_total API requests by endpoint and status.")
	fmt.Fprintln(w, "# TYPE cflow_switch_api_requests_total counter")
	keys := make([]reqKey, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].pattern != keys[j].pattern {
			return keys[i].pattern < keys[j].pattern
		}
		return keys[i].code < keys[j].code
	})
	for _, k := range keys {
		fmt.Fprintf(w, "cflow_switch_api_requests_total{endpoint=%q,code=\"%d\"} %d\n", k.pattern, k.code, m.requests[k])
	}
	fmt.Fprintln(w, "# HELP cflow_switch_api_write_seconds Time to serve successful writes (validation, table update, state commit).")
	fmt.Fprintln(w, "# TYPE cflow_switch_api_write_seconds histogram")
	for i, b := range m.buckets {
		fmt.Fprintf(w, "cflow_switch_api_write_seconds_bucket{le=\"%g\"} %d\n", b, m.counts[i])
	}
	fmt.Fprintf(w, "cflow_switch_api_write_seconds_bucket{le=\"+Inf\"} %d\n", m.count)
	fmt.Fprintf(w, "cflow_switch_api_write_seconds_sum %g\n", m.sum)
	fmt.Fprintf(w, "cflow_switch_api_write_seconds_count %d\n", m.count)
}

// serveMetrics writes the data plane's counters and the API's in the
// Prometheus text format.
func (c *Controller) serveMetrics(w http.ResponseWriter, r *http.Request) {
	var b strings.Builder
	if err := c.writeTableMetrics(&b); err != nil {
		c.log.Error("metrics", "err", err)
		http.Error(w, "read counters: "+err.Error(), http.StatusInternalServerError)
		return
	}
	c.metrics.write(&b)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = io.WriteString(w, b.String())
	c.metrics.observe(r.Pattern, http.StatusOK, false, 0)
}

func family(w io.Writer, name, typ, help string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

func (c *Controller) writeTableMetrics(w io.Writer) error {
	ports, err := c.portViews()
	if err != nil {
		return err
	}
	type pm struct {
		name, help string
		val        func(PortView) uint64
	}
	for _, m := range []pm{
		{"cflow_switch_port_rx_packets_total", "Frames received on a switch port.", func(p PortView) uint64 { return p.RxPackets }},
		{"cflow_switch_port_rx_bytes_total", "Bytes received on a switch port.", func(p PortView) uint64 { return p.RxBytes }},
		{"cflow_switch_port_tx_packets_total", "Frames sent out of a switch port (flood copies included).", func(p PortView) uint64 { return p.TxPackets }},
		{"cflow_switch_port_tx_bytes_total", "Bytes sent out of a switch port.", func(p PortView) uint64 { return p.TxBytes }},
		{"cflow_switch_port_rx_dropped_total", "Frames received on a port and dropped.", func(p PortView) uint64 { return p.RxDropped }},
	} {
		family(w, m.name, "counter", m.help)
		for _, p := range ports {
			fmt.Fprintf(w, "%s{port=\"%d\",name=%q,interface=%q} %d\n", m.name, p.Number, p.Name, p.Interface, m.val(p))
		}
	}
	cs, err := c.dp.Counters()
	if err != nil {
		return err
	}
	family(w, "cflow_switch_packets_total", "Frames handled by the program, by outcome (drop reasons, routed, switched, ARP, load balancer).", "counter")
	reasons := make([]string, 0, len(cs.Global))
	for k := range cs.Global {
		reasons = append(reasons, k)
	}
	sort.Strings(reasons)
	for _, k := range reasons {
		fmt.Fprintf(w, "cflow_switch_packets_total{reason=%q} %d\n", k, cs.Global[k])
	}
	addrs, err := c.dp.Addresses()
	if err != nil {
		return err
	}
	family(w, "cflow_switch_addresses", "Entries in the address table.", "gauge")
	fmt.Fprintf(w, "cflow_switch_addresses %d\n", len(addrs))
	family(w, "cflow_switch_address_packets_total", "IPv4 packets forwarded by an address entry.", "counter")
	for _, a := range addrs {
		fmt.Fprintf(w, "cflow_switch_address_packets_total{ip=%q} %d\n", a.Addr, a.Counters.Packets)
	}
	family(w, "cflow_switch_address_bytes_total", "Bytes forwarded by an address entry.", "counter")
	for _, a := range addrs {
		fmt.Fprintf(w, "cflow_switch_address_bytes_total{ip=%q} %d\n", a.Addr, a.Counters.Bytes)
	}
	svcs, err := c.dp.Services()
	if err != nil {
		return err
	}
	family(w, "cflow_switch_service_packets_total", "Client packets DNATed to a member of a service.", "counter")
	for _, s := range svcs {
		fmt.Fprintf(w, "cflow_switch_service_packets_total{vip=%q,port=\"%d\",proto=%q} %d\n", s.VIP, s.Port, s.Proto, s.Counters.Packets)
	}
	family(w, "cflow_switch_service_new_flows_total", "Flows given a member by a service.", "counter")
	for _, s := range svcs {
		fmt.Fprintf(w, "cflow_switch_service_new_flows_total{vip=%q,port=\"%d\",proto=%q} %d\n", s.VIP, s.Port, s.Proto, s.Counters.NewFlows)
	}
	flows, err := c.dp.Conntrack()
	if err != nil {
		return err
	}
	family(w, "cflow_switch_flows", "Entries in the connection table.", "gauge")
	fmt.Fprintf(w, "cflow_switch_flows %d\n", len(flows))
	return nil
}
