package dataplane

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Limits of the tables, from bpf/consts.h (generated, never copied).
const (
	MaxPorts     = int(bpfDpLimitsMAX_PORTS)     // switch port numbers are 1..MaxPorts
	MaxAddresses = int(bpfDpLimitsMAX_ADDRESSES) // entries of the address table
	MaxServices  = int(bpfDpLimitsMAX_SERVICES)  // load-balanced services
	MaxMembers   = int(bpfDpLimitsMAX_MEMBERS)   // members per service
	MaxFlows     = int(bpfDpLimitsMAX_FLOWS)     // connection table (LRU) entries
)

// AttachMode selects how the program is attached to a port.
type AttachMode int

const (
	// AttachAuto uses TCX and falls back to tc clsact + cls_bpf
	// (direct-action) when the kernel has no TCX (before 6.6).
	AttachAuto AttachMode = iota
	// AttachTCX uses TCX links only.
	AttachTCX
	// AttachTC uses a tc clsact qdisc and a cls_bpf filter only.
	AttachTC
)

// Attach modes as recorded in the ports table (port_info.attach_mode), so a
// later Load knows how each port was attached.
const (
	modeNone uint8 = 0
	modeTCX  uint8 = 1
	modeTC   uint8 = 2
)

func modeName(m uint8) string {
	switch m {
	case modeTCX:
		return "tcx"
	case modeTC:
		return "tc"
	}
	return "none"
}

// Options configure Load.
type Options struct {
	// PinPath is a directory on a bpffs (see EnsureBPFFS). When set, the
	// maps and the TCX links are pinned there: Close then leaves the switch
	// forwarding, and a later Load with the same PinPath takes over the
	// same maps and attachments. Empty: nothing outlives the Dataplane.
	PinPath string
	// Netns is the path of the network namespace that holds the switch
	// ports (for example /run/netns/sw). Empty: the caller's namespace.
	Netns string
	// Attach selects TCX, tc or automatic choice for new attachments.
	Attach AttachMode
	// Logger receives notable events (fallbacks, re-attachments). Nil
	// discards them.
	Logger *slog.Logger
}

// Dataplane is a loaded switch program with its tables. Its methods are safe
// for concurrent use.
type Dataplane struct {
	mu     sync.Mutex
	opts   Options
	log    *slog.Logger
	objs   bpfObjects
	ncpu   int
	links  map[uint32]link.Link // TCX links held by this process, by port
	closed bool
}

// Load loads the switch program and its maps. With Options.PinPath it takes
// over maps and attachments a previous Load left pinned there (swapping the
// attached program for the one just loaded, atomically per port), so state
// and forwarding survive a restart of the caller.
func Load(opts Options) (*Dataplane, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones
	// to the memory cgroup, where this is a no-op.
	if err := rlimit.RemoveMemlock(); err != nil {
		log.Debug("remove memlock rlimit", "err", err)
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("count possible cpus: %w", err)
	}

	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("load bpf spec: %w", err)
	}
	if opts.PinPath != "" {
		if err := checkBPFFS(opts.PinPath); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(opts.PinPath, 0o700); err != nil {
			return nil, fmt.Errorf("create pin directory: %w", err)
		}
	} else {
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinNone
		}
	}

	d := &Dataplane{opts: opts, log: log, ncpu: ncpu, links: map[uint32]link.Link{}}
	err = spec.LoadAndAssign(&d.objs, &ebpf.CollectionOptions{
		Maps: ebpf.MapOptions{PinPath: opts.PinPath},
	})
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		return nil, fmt.Errorf("load bpf objects: maps pinned in %s were made by an incompatible version (Destroy them first): %w",
			opts.PinPath, err)
	}
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load bpf objects: %+v", verr)
		}
		return nil, fmt.Errorf("load bpf objects: %w", err)
	}

	if err := d.initConfig(); err != nil {
		d.objs.Close()
		return nil, err
	}
	if opts.PinPath != "" {
		if err := d.adoptPorts(); err != nil {
			d.closeLinks()
			d.objs.Close()
			return nil, err
		}
	}
	return d, nil
}

// initConfig writes the defaults into a fresh config table (flooding on);
// a table taken over from a pin keeps its settings.
func (d *Dataplane) initConfig() error {
	var cfg bpfDpConfig
	if err := d.objs.Config.Lookup(uint32(0), &cfg); err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	if cfg.Initialized != 0 {
		return nil
	}
	cfg = bpfDpConfig{FloodArp: 1, Initialized: 1}
	if err := d.objs.Config.Put(uint32(0), &cfg); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// Pinned reports whether the Dataplane's maps and links are pinned.
func (d *Dataplane) Pinned() bool { return d.opts.PinPath != "" }

// Close releases the Dataplane. Without a PinPath it detaches every port
// and frees the tables. With a PinPath the switch keeps forwarding with its
// pinned tables, for a later Load to take over; use Destroy to stop it.
func (d *Dataplane) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	var errs []error
	if !d.Pinned() {
		// tc filters outlive the process; TCX links die with their fd.
		errs = append(errs, d.detachAllLocked())
	}
	d.closeLinks()
	errs = append(errs, d.objs.Close())
	d.closed = true
	return errors.Join(errs...)
}

// Unpin removes the pins of the maps and links, keeping the Dataplane
// usable; it stops forwarding once the Dataplane is closed, like one loaded
// without a PinPath.
func (d *Dataplane) Unpin() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	return d.unpinLocked()
}

func (d *Dataplane) unpinLocked() error {
	if !d.Pinned() {
		return nil
	}
	var errs []error
	for port, l := range d.links {
		if err := l.Unpin(); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unpin link of port %d: %w", port, err))
		}
	}
	for _, m := range d.allMaps() {
		if err := m.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("unpin map: %w", err))
		}
	}
	d.opts.PinPath = ""
	return errors.Join(errs...)
}

// Destroy detaches every port, removes all pins and closes the Dataplane:
// afterwards nothing of the switch is left in the kernel.
func (d *Dataplane) Destroy() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	pin := d.opts.PinPath
	errs := []error{d.detachAllLocked(), d.unpinLocked()}
	d.closeLinks()
	errs = append(errs, d.objs.Close())
	d.closed = true
	if pin != "" {
		// Only succeeds when we left nothing else behind; a shared
		// directory stays.
		_ = os.Remove(pin)
	}
	return errors.Join(errs...)
}

func (d *Dataplane) allMaps() []*ebpf.Map {
	m := &d.objs.bpfMaps
	return []*ebpf.Map{m.Ports, m.PortByIfindex, m.PortStats, m.Addresses, m.AddrStats,
		m.Services, m.SvcStats, m.Conntrack, m.ReverseNat, m.Config, m.GlobalStats}
}

func (d *Dataplane) closeLinks() {
	for port, l := range d.links {
		_ = l.Close()
		delete(d.links, port)
	}
}

func (d *Dataplane) linkPin(port uint32) string {
	return filepath.Join(d.opts.PinPath, fmt.Sprintf("link_port%d", port))
}

// checkBPFFS verifies that dir (or, if it does not exist yet, its nearest
// existing parent) is on a bpffs, the only place maps can be pinned.
func checkBPFFS(dir string) error {
	p := dir
	for {
		var st unix.Statfs_t
		err := unix.Statfs(p, &st)
		if err == nil {
			if st.Type != unix.BPF_FS_MAGIC {
				return fmt.Errorf("%w: pin path %s is not on a bpffs (mount one: mount -t bpf bpf /sys/fs/bpf)", ErrInvalid, dir)
			}
			return nil
		}
		if !errors.Is(err, unix.ENOENT) || filepath.Dir(p) == p {
			return fmt.Errorf("statfs %s: %w", p, err)
		}
		p = filepath.Dir(p)
	}
}

// EnsureBPFFS makes sure dir is on a bpffs, mounting one there if it is not
// (the usual dir is /sys/fs/bpf). Needs CAP_SYS_ADMIN for the mount.
func EnsureBPFFS(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil && st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs on %s: %w", dir, err)
	}
	return nil
}

func (d *Dataplane) checkOpen() error {
	if d.closed {
		return ErrClosed
	}
	return nil
}

// perCPU returns a zeroed per-CPU value slice for the counter maps.
func perCPU[T any](d *Dataplane) []T { return make([]T, d.ncpu) }
