package dataplane

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/cilium/ebpf"
)

// Forward is the forward view of an address: IPv4 packets to it leave
// through Port. With DstMAC the switch routes them: the destination MAC is
// rewritten and the TTL decremented. Without, frames pass unchanged.
type Forward struct {
	Port   uint32
	DstMAC net.HardwareAddr
}

// ARP is the arp_forward view of an address: ARP packets whose target is
// the address leave through Port. Alternatively, with ReplyMAC (and Port 0),
// the switch itself answers ARP requests for the address with that MAC —
// the way to give a virtual IP, which lives on no host, an L2 presence.
type ARP struct {
	Port     uint32
	ReplyMAC net.HardwareAddr
}

// AddressEntry is one entry of the address table. Forward and ARP are the
// two views (the seed's forward and arp_forward tables); nil means the view
// has no entry for the address. Both views of an address are one table
// element, so any change of an entry — moving both views at once included —
// reaches packets as a single atomic step.
type AddressEntry struct {
	Forward *Forward
	ARP     *ARP
}

// Address is an address table entry as listed, with its counters.
type Address struct {
	Addr netip.Addr
	AddressEntry
	Counters AddressCounters
}

// AddressCounters count the packets that used an address entry, summed over
// CPUs. They survive changes of the entry and restart when it is deleted.
type AddressCounters struct {
	Packets    uint64 // IPv4 packets forwarded by the forward view
	Bytes      uint64
	ARPPackets uint64 // ARP packets forwarded by, or answered for, the entry
}

// encode validates e and builds the table value.
func (d *Dataplane) encodeAddress(e AddressEntry) (bpfAddrEntry, error) {
	var v bpfAddrEntry
	if e.Forward == nil && e.ARP == nil {
		return v, invalid("entry has neither forward nor arp (use DeleteAddress)")
	}
	if f := e.Forward; f != nil {
		if err := d.portAttached("sw_port", f.Port); err != nil {
			return v, err
		}
		v.HasFwd, v.FwdPort = 1, f.Port
		if f.DstMAC != nil {
			mac, err := unicastMAC("dst_mac", f.DstMAC)
			if err != nil {
				return v, err
			}
			v.HasDstMac, v.DstMac = 1, mac
		}
	}
	if a := e.ARP; a != nil {
		switch {
		case a.ReplyMAC != nil && a.Port != 0:
			return v, invalid("arp: set either port or reply_mac, not both")
		case a.ReplyMAC != nil:
			mac, err := unicastMAC("arp_reply_mac", a.ReplyMAC)
			if err != nil {
				return v, err
			}
			v.ArpReply, v.ArpMac = 1, mac
		default:
			if err := d.portAttached("arp_port", a.Port); err != nil {
				return v, err
			}
			v.HasArp, v.ArpPort = 1, a.Port
		}
	}
	return v, nil
}

func decodeAddress(v bpfAddrEntry) AddressEntry {
	var e AddressEntry
	if v.HasFwd != 0 {
		e.Forward = &Forward{Port: v.FwdPort}
		if v.HasDstMac != 0 {
			e.Forward.DstMAC = macOf(v.DstMac)
		}
	}
	if v.HasArp != 0 {
		e.ARP = &ARP{Port: v.ArpPort}
	} else if v.ArpReply != 0 {
		e.ARP = &ARP{ReplyMAC: macOf(v.ArpMac)}
	}
	return e
}

// SetAddress creates or replaces the entry of ip, in one atomic update.
// The ports it names must be attached (ErrUnknownPort otherwise).
func (d *Dataplane) SetAddress(ip netip.Addr, e AddressEntry) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.setAddressLocked(ip, e); err != nil {
		return fmt.Errorf("set address %s: %w", ip, err)
	}
	return nil
}

func (d *Dataplane) setAddressLocked(ip netip.Addr, e AddressEntry) error {
	if err := d.checkOpen(); err != nil {
		return err
	}
	key, err := addrKey("ipv4", ip)
	if err != nil {
		return err
	}
	v, err := d.encodeAddress(e)
	if err != nil {
		return err
	}
	// Counters first, created only if missing so that replacing an entry
	// keeps them; if the address table then refuses the entry, undo.
	created := true
	if err := d.objs.AddrStats.Update(key, perCPU[bpfAddrCounters](d), ebpf.UpdateNoExist); err != nil {
		if !errors.Is(err, ebpf.ErrKeyExist) {
			return mapErr("create counters", err)
		}
		created = false
	}
	if err := d.objs.Addresses.Update(key, &v, ebpf.UpdateAny); err != nil {
		if created {
			_ = d.objs.AddrStats.Delete(key)
		}
		return mapErr("update address table", err)
	}
	return nil
}

// update applies fn to the current entry of ip (zero if none) and stores
// the result, deleting the element when both views end up empty.
func (d *Dataplane) updateAddress(op string, ip netip.Addr, mustExist bool, fn func(*AddressEntry)) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.checkOpen(); err != nil {
		return err
	}
	key, err := addrKey("ipv4", ip)
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, ip, err)
	}
	var v bpfAddrEntry
	err = d.objs.Addresses.Lookup(key, &v)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return mapErr(fmt.Sprintf("%s %s", op, ip), err)
	}
	if err != nil && mustExist {
		return fmt.Errorf("%s %s: %w", op, ip, ErrNotFound)
	}
	e := decodeAddress(v)
	fn(&e)
	if e.Forward == nil && e.ARP == nil {
		return d.deleteAddressLocked(op, ip, key)
	}
	if err := d.setAddressLocked(ip, e); err != nil {
		return fmt.Errorf("%s %s: %w", op, ip, err)
	}
	return nil
}

// SetForward sets the forward view of ip, keeping its arp view.
func (d *Dataplane) SetForward(ip netip.Addr, f Forward) error {
	return d.updateAddress("set forward", ip, false, func(e *AddressEntry) { e.Forward = &f })
}

// DeleteForward removes the forward view of ip, keeping its arp view.
func (d *Dataplane) DeleteForward(ip netip.Addr) error {
	return d.updateAddress("delete forward", ip, true, func(e *AddressEntry) { e.Forward = nil })
}

// SetARP sets the arp_forward view of ip, keeping its forward view.
func (d *Dataplane) SetARP(ip netip.Addr, a ARP) error {
	return d.updateAddress("set arp", ip, false, func(e *AddressEntry) { e.ARP = &a })
}

// DeleteARP removes the arp_forward view of ip, keeping its forward view.
func (d *Dataplane) DeleteARP(ip netip.Addr) error {
	return d.updateAddress("delete arp", ip, true, func(e *AddressEntry) { e.ARP = nil })
}

// MoveAddress points both views of ip at port — forward (with dstMAC, nil
// for none) and arp_forward — in one atomic update: the same-IP migration
// cut-over, the seed's /updateForward.
func (d *Dataplane) MoveAddress(ip netip.Addr, port uint32, dstMAC net.HardwareAddr) error {
	return d.SetAddress(ip, AddressEntry{
		Forward: &Forward{Port: port, DstMAC: dstMAC},
		ARP:     &ARP{Port: port},
	})
}

// DeleteAddress removes the entry of ip (both views) and its counters.
func (d *Dataplane) DeleteAddress(ip netip.Addr) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.checkOpen(); err != nil {
		return err
	}
	key, err := addrKey("ipv4", ip)
	if err != nil {
		return fmt.Errorf("delete address %s: %w", ip, err)
	}
	return d.deleteAddressLocked("delete address", ip, key)
}

func (d *Dataplane) deleteAddressLocked(op string, ip netip.Addr, key uint32) error {
	if err := d.objs.Addresses.Delete(key); err != nil {
		return mapErr(fmt.Sprintf("%s %s", op, ip), err)
	}
	if err := d.objs.AddrStats.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return mapErr(fmt.Sprintf("%s %s: counters", op, ip), err)
	}
	return nil
}

// Address returns the entry of ip with its counters.
func (d *Dataplane) Address(ip netip.Addr) (Address, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.checkOpen(); err != nil {
		return Address{}, err
	}
	key, err := addrKey("ipv4", ip)
	if err != nil {
		return Address{}, fmt.Errorf("read address %s: %w", ip, err)
	}
	var v bpfAddrEntry
	if err := d.objs.Addresses.Lookup(key, &v); err != nil {
		return Address{}, mapErr(fmt.Sprintf("read address %s", ip), err)
	}
	return d.address(key, v), nil
}

func (d *Dataplane) address(key uint32, v bpfAddrEntry) Address {
	a := Address{Addr: keyAddr(key), AddressEntry: decodeAddress(v)}
	var per []bpfAddrCounters
	if err := d.objs.AddrStats.Lookup(key, &per); err == nil {
		for _, c := range per {
			a.Counters.Packets += c.FwdPackets
			a.Counters.Bytes += c.FwdBytes
			a.Counters.ARPPackets += c.ArpPackets
		}
	}
	return a
}

// Addresses lists the address table, sorted by address.
func (d *Dataplane) Addresses() ([]Address, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.checkOpen(); err != nil {
		return nil, err
	}
	var (
		key uint32
		v   bpfAddrEntry
		out []Address
	)
	it := d.objs.Addresses.Iterate()
	for it.Next(&key, &v) {
		out = append(out, d.address(key, v))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr.Less(out[j].Addr) })
	return out, nil
}
