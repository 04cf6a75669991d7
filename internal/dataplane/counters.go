package dataplane

import (
	"fmt"
	"reflect"
	"strings"
	"unicode"
)

// Counters is a snapshot of the port and global counters.
type Counters struct {
	// Ports holds the counters of the attached ports by port number.
	Ports map[uint32]PortCounters
	// Global holds the counters by reason, named as the fields of struct
	// global_counters in bpf/structs.h (no_route, non_ip, ttl_exceeded,
	// arp_flooded, lb_no_member, ...): every name is always present.
	Global map[string]uint64
}

// Counters reads all port and global counters, summed over CPUs.
func (d *Dataplane) Counters() (Counters, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.checkOpen(); err != nil {
		return Counters{}, err
	}
	c := Counters{Ports: map[uint32]PortCounters{}}
	for port := uint32(1); port <= uint32(MaxPorts); port++ {
		pi, err := d.portInfo(port)
		if err != nil {
			return Counters{}, err
		}
		if pi.Ifindex == 0 {
			continue
		}
		if c.Ports[port], err = d.portCounters(port); err != nil {
			return Counters{}, err
		}
	}
	g, err := d.globalCounters()
	if err != nil {
		return Counters{}, err
	}
	c.Global = g
	return c, nil
}

// globalCounters sums the per-CPU global_counters and names each field by
// its C name, recovered from the generated Go field name, so the list of
// counters lives only in bpf/structs.h.
func (d *Dataplane) globalCounters() (map[string]uint64, error) {
	var per []bpfGlobalCounters
	if err := d.objs.GlobalStats.Lookup(uint32(0), &per); err != nil {
		return nil, mapErr("read global counters", err)
	}
	out := map[string]uint64{}
	t := reflect.TypeFor[bpfGlobalCounters]()
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Type.Kind() != reflect.Uint64 {
			continue // the structs.HostLayout marker
		}
		var sum uint64
		for _, v := range per {
			sum += reflect.ValueOf(v).Field(i).Uint()
		}
		out[snake(f.Name)] = sum
	}
	return out, nil
}

// snake turns bpf2go's NoRoute back into no_route.
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// SetFlood turns flooding of ARP for unknown targets on or off (on after
// the first Load; the setting survives a re-Load over pinned maps).
func (d *Dataplane) SetFlood(on bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.checkOpen(); err != nil {
		return err
	}
	cfg := bpfDpConfig{Initialized: 1}
	if on {
		cfg.FloodArp = 1
	}
	if err := d.objs.Config.Put(uint32(0), &cfg); err != nil {
		return fmt.Errorf("set flood: %w", err)
	}
	return nil
}

// Flood reports whether ARP flooding is on.
func (d *Dataplane) Flood() (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.checkOpen(); err != nil {
		return false, err
	}
	var cfg bpfDpConfig
	if err := d.objs.Config.Lookup(uint32(0), &cfg); err != nil {
		return false, fmt.Errorf("read flood: %w", err)
	}
	return cfg.FloodArp != 0, nil
}
