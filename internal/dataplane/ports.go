package dataplane

import (
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Port is an attached switch port.
type Port struct {
	Number   uint32
	Ifindex  int
	Name     string // interface name in the switch namespace, "" if it is gone
	Mode     string // "tcx" or "tc"
	Counters PortCounters
}

// PortCounters are the packet and byte counters of a port, summed over CPUs.
type PortCounters struct {
	RxPackets uint64 // frames that entered through the port
	RxBytes   uint64
	TxPackets uint64 // frames sent out of the port, flood copies included
	TxBytes   uint64
	RxDropped uint64 // frames that entered through the port and were dropped
}

func checkPortNo(port uint32) error {
	if port < 1 || port > uint32(MaxPorts) {
		return invalid("port %d: out of range 1..%d", port, MaxPorts)
	}
	return nil
}

// AttachPort makes the interface ifname (in the switch namespace) switch
// port number port: the program is attached to its ingress and packets for
// the port are redirected to it. Attaching the same interface to the same
// port again is a no-op, which lets a restarted controller re-apply its
// configuration; any other reuse of the port or interface is ErrPortInUse.
func (d *Dataplane) AttachPort(port uint32, ifname string) error {
	if err := checkPortNo(port); err != nil {
		return fmt.Errorf("attach port: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.checkOpen(); err != nil {
		return err
	}

	var ifindex int
	err := d.inNetns(func() error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		ifindex = l.Attrs().Index
		return nil
	})
	if err != nil {
		return fmt.Errorf("attach port %d: interface %q: %w: %w", port, ifname, ErrInvalid, err)
	}

	cur, err := d.portInfo(port)
	if err != nil {
		return err
	}
	if cur.Ifindex != 0 {
		if int(cur.Ifindex) == ifindex {
			return nil
		}
		return fmt.Errorf("attach port %d to %s: %w: attached to ifindex %d", port, ifname, ErrPortInUse, cur.Ifindex)
	}
	var other uint32
	if err := d.objs.PortByIfindex.Lookup(uint32(ifindex), &other); err == nil {
		return fmt.Errorf("attach port %d to %s: %w: interface is port %d", port, ifname, ErrPortInUse, other)
	}

	// Tables first, so the program knows the port from its first packet.
	if err := d.objs.PortByIfindex.Put(uint32(ifindex), port); err != nil {
		return mapErr(fmt.Sprintf("attach port %d: add ifindex", port), err)
	}
	if err := d.objs.PortStats.Put(port, perCPU[bpfPortCounters](d)); err != nil {
		_ = d.objs.PortByIfindex.Delete(uint32(ifindex))
		return mapErr(fmt.Sprintf("attach port %d: reset counters", port), err)
	}
	mode, err := d.attach(port, ifname, ifindex)
	if err != nil {
		_ = d.objs.PortByIfindex.Delete(uint32(ifindex))
		return err
	}
	if err := d.objs.Ports.Put(port, bpfPortInfo{Ifindex: uint32(ifindex), AttachMode: mode}); err != nil {
		_ = d.detach(port, ifindex, mode)
		_ = d.objs.PortByIfindex.Delete(uint32(ifindex))
		return mapErr(fmt.Sprintf("attach port %d", port), err)
	}
	d.log.Info("port attached", "port", port, "ifname", ifname, "ifindex", ifindex, "mode", modeName(mode))
	return nil
}

// attach hooks the program to the ingress of ifindex per Options.Attach and
// returns the mode used.
func (d *Dataplane) attach(port uint32, ifname string, ifindex int) (uint8, error) {
	if d.opts.Attach != AttachTC {
		err := d.attachTCX(port, ifindex)
		if err == nil {
			return modeTCX, nil
		}
		if d.opts.Attach == AttachTCX || !errors.Is(err, ebpf.ErrNotSupported) {
			return modeNone, fmt.Errorf("attach tcx to %s: %w", ifname, err)
		}
		d.log.Warn("tcx not supported, falling back to tc clsact", "ifname", ifname, "err", err)
	}
	if err := d.attachTC(ifindex); err != nil {
		return modeNone, fmt.Errorf("attach tc to %s: %w", ifname, err)
	}
	return modeTC, nil
}

func (d *Dataplane) attachTCX(port uint32, ifindex int) error {
	var l link.Link
	err := d.inNetns(func() error {
		var err error
		l, err = link.AttachTCX(link.TCXOptions{
			Interface: ifindex,
			Program:   d.objs.SwitchIngress,
			Attach:    ebpf.AttachTCXIngress,
		})
		return err
	})
	if err != nil {
		return err
	}
	if d.Pinned() {
		path := d.linkPin(port)
		// A stale pin of a link whose interface is gone would block
		// the new one.
		_ = os.Remove(path)
		if err := l.Pin(path); err != nil {
			_ = l.Close()
			return fmt.Errorf("pin link: %w", err)
		}
	}
	d.links[port] = l
	return nil
}

// tcFilter is the cls_bpf filter of the tc fallback: one per port, at a
// fixed handle and priority so it can be replaced and deleted by value.
func (d *Dataplane) tcFilter(ifindex int, fd int) *netlink.BpfFilter {
	return &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: ifindex,
			Parent:    netlink.HANDLE_MIN_INGRESS,
			Handle:    netlink.MakeHandle(0, 1),
			Protocol:  unix.ETH_P_ALL,
			Priority:  1,
		},
		Fd:           fd,
		Name:         "cflow_switch",
		DirectAction: true,
	}
}

// attachTC installs (or replaces, atomically for packets) the cls_bpf
// filter on the clsact ingress hook of ifindex.
func (d *Dataplane) attachTC(ifindex int) error {
	return d.inNetns(func() error {
		qdisc := &netlink.GenericQdisc{
			QdiscAttrs: netlink.QdiscAttrs{
				LinkIndex: ifindex,
				Handle:    netlink.MakeHandle(0xffff, 0),
				Parent:    netlink.HANDLE_CLSACT,
			},
			QdiscType: "clsact",
		}
		if err := netlink.QdiscAdd(qdisc); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add clsact qdisc: %w", err)
		}
		if err := netlink.FilterReplace(d.tcFilter(ifindex, d.objs.SwitchIngress.FD())); err != nil {
			return fmt.Errorf("replace cls_bpf filter: %w", err)
		}
		return nil
	})
}

// detach removes the program from a port's interface. The clsact qdisc of
// the tc fallback is left in place: other filters may use it.
func (d *Dataplane) detach(port uint32, ifindex int, mode uint8) error {
	switch mode {
	case modeTCX:
		l := d.links[port]
		if l == nil && d.Pinned() {
			var err error
			if l, err = link.LoadPinnedLink(d.linkPin(port), nil); err != nil {
				if errors.Is(err, os.ErrNotExist) {
					return nil
				}
				return fmt.Errorf("load pinned link of port %d: %w", port, err)
			}
		}
		if l == nil {
			return nil
		}
		delete(d.links, port)
		var errs []error
		if err := l.Detach(); err != nil && !errors.Is(err, unix.ENOLINK) && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("detach tcx link of port %d: %w", port, err))
		}
		if d.Pinned() {
			if err := l.Unpin(); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("unpin link of port %d: %w", port, err))
			}
		}
		errs = append(errs, l.Close())
		return errors.Join(errs...)
	case modeTC:
		return d.inNetns(func() error {
			err := netlink.FilterDel(d.tcFilter(ifindex, 0))
			if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("delete cls_bpf filter of port %d: %w", port, err)
			}
			return nil
		})
	}
	return nil
}

// DetachPort removes the program from a port and forgets the port. Address
// entries that still point at it drop their packets (counted as port_down)
// until they are changed.
func (d *Dataplane) DetachPort(port uint32) error {
	if err := checkPortNo(port); err != nil {
		return fmt.Errorf("detach port: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.checkOpen(); err != nil {
		return err
	}
	pi, err := d.portInfo(port)
	if err != nil {
		return err
	}
	if pi.Ifindex == 0 {
		return fmt.Errorf("detach port %d: %w", port, ErrUnknownPort)
	}
	return d.detachPortLocked(port, pi)
}

func (d *Dataplane) detachPortLocked(port uint32, pi bpfPortInfo) error {
	// Stop sending to the port before its hook goes away.
	if err := d.objs.Ports.Put(port, bpfPortInfo{}); err != nil {
		return mapErr(fmt.Sprintf("detach port %d", port), err)
	}
	err := d.detach(port, int(pi.Ifindex), pi.AttachMode)
	if derr := d.objs.PortByIfindex.Delete(pi.Ifindex); derr != nil && !errors.Is(derr, ebpf.ErrKeyNotExist) {
		err = errors.Join(err, mapErr(fmt.Sprintf("detach port %d: remove ifindex", port), derr))
	}
	d.log.Info("port detached", "port", port, "ifindex", pi.Ifindex)
	return err
}

func (d *Dataplane) detachAllLocked() error {
	var errs []error
	for port := uint32(1); port <= uint32(MaxPorts); port++ {
		pi, err := d.portInfo(port)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if pi.Ifindex != 0 {
			errs = append(errs, d.detachPortLocked(port, pi))
		}
	}
	return errors.Join(errs...)
}

// adoptPorts takes over the attachments recorded in pinned tables after a
// restart: each port's hook is switched to the program just loaded (one
// atomic replacement per port, no gap in forwarding).
func (d *Dataplane) adoptPorts() error {
	for port := uint32(1); port <= uint32(MaxPorts); port++ {
		pi, err := d.portInfo(port)
		if err != nil {
			return err
		}
		if pi.Ifindex == 0 {
			continue
		}
		switch pi.AttachMode {
		case modeTCX:
			l, err := link.LoadPinnedLink(d.linkPin(port), nil)
			if err == nil {
				if err = l.Update(d.objs.SwitchIngress); err != nil {
					_ = l.Close()
				}
			}
			if err != nil {
				// The link is gone (its interface was deleted, or the
				// pin removed): attach afresh if the interface is
				// still there.
				d.log.Warn("pinned link unusable, re-attaching", "port", port, "err", err)
				if err := d.attachTCX(port, int(pi.Ifindex)); err != nil {
					d.forgetPort(port, pi, err)
					continue
				}
			} else {
				d.links[port] = l
			}
		case modeTC:
			if err := d.attachTC(int(pi.Ifindex)); err != nil {
				d.forgetPort(port, pi, err)
				continue
			}
		}
		d.log.Info("port adopted", "port", port, "ifindex", pi.Ifindex, "mode", modeName(pi.AttachMode))
	}
	return nil
}

func (d *Dataplane) forgetPort(port uint32, pi bpfPortInfo, cause error) {
	d.log.Warn("forgetting port whose interface is gone", "port", port, "ifindex", pi.Ifindex, "err", cause)
	_ = d.objs.Ports.Put(port, bpfPortInfo{})
	_ = d.objs.PortByIfindex.Delete(pi.Ifindex)
	_ = os.Remove(d.linkPin(port))
}

func (d *Dataplane) portInfo(port uint32) (bpfPortInfo, error) {
	var pi bpfPortInfo
	if err := d.objs.Ports.Lookup(port, &pi); err != nil {
		return pi, mapErr(fmt.Sprintf("read port %d", port), err)
	}
	return pi, nil
}

// portAttached reports an error unless port is attached; used to refuse
// table entries that would send packets nowhere.
func (d *Dataplane) portAttached(field string, port uint32) error {
	if err := checkPortNo(port); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	pi, err := d.portInfo(port)
	if err != nil {
		return err
	}
	if pi.Ifindex == 0 {
		return fmt.Errorf("%w: %s %d is not attached", ErrUnknownPort, field, port)
	}
	return nil
}

// Ports lists the attached ports with their counters.
func (d *Dataplane) Ports() ([]Port, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.checkOpen(); err != nil {
		return nil, err
	}
	var out []Port
	for port := uint32(1); port <= uint32(MaxPorts); port++ {
		pi, err := d.portInfo(port)
		if err != nil {
			return nil, err
		}
		if pi.Ifindex == 0 {
			continue
		}
		p := Port{Number: port, Ifindex: int(pi.Ifindex), Mode: modeName(pi.AttachMode)}
		_ = d.inNetns(func() error {
			if ifi, err := net.InterfaceByIndex(p.Ifindex); err == nil {
				p.Name = ifi.Name
			}
			return nil
		})
		if p.Counters, err = d.portCounters(port); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func (d *Dataplane) portCounters(port uint32) (PortCounters, error) {
	var per []bpfPortCounters
	if err := d.objs.PortStats.Lookup(port, &per); err != nil {
		return PortCounters{}, mapErr(fmt.Sprintf("read counters of port %d", port), err)
	}
	var c PortCounters
	for _, v := range per {
		c.RxPackets += v.RxPackets
		c.RxBytes += v.RxBytes
		c.TxPackets += v.TxPackets
		c.TxBytes += v.TxBytes
		c.RxDropped += v.RxDropped
	}
	return c, nil
}
