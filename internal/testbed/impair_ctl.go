package testbed

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/containerflow/containerflow/internal/nsrun"
)

// Impairment mechanisms.
const (
	// MechanismNetem is the kernel's netem qdisc at the root of both
	// ends of the link, where the kernel has it.
	MechanismNetem = "netem"
	// MechanismRelay is a userspace relay process (relay.go) for
	// kernels without netem.
	MechanismRelay = "relay"
	// MechanismAuto is netem when the kernel has it, else the relay.
	MechanismAuto = "auto"
)

// LinkImpairment is one impaired link as recorded in the testbed's state
// (impair/LINK.json) and shown by Status.
type LinkImpairment struct {
	Link       string     `json:"link"`
	Impairment Impairment `json:"impairment"`
	Mechanism  string     `json:"mechanism"`
	// PID is the relay's process.
	PID   int       `json:"pid,omitempty"`
	Since time.Time `json:"since"`
	// Running: the relay process is alive (always true for netem).
	Running bool `json:"running"`
	// Stats are the relay's counters per direction ("up" is
	// node->switch), written every second.
	Stats map[string]RelayStats `json:"stats,omitempty"`
}

func (tb *Testbed) impairDir() string { return filepath.Join(tb.Dir(), "impair") }

func (tb *Testbed) impairFile(l LinkRef, ext string) string {
	return filepath.Join(tb.impairDir(), l.String()+ext)
}

// Impair applies im to both directions of link ("NODE", "NODE-data" or
// "NODE-mgmt"), replacing any earlier impairment of it, with netem where
// the kernel has it and the relay otherwise.
func (tb *Testbed) Impair(link string, im Impairment) error {
	return tb.ImpairWith(link, im, MechanismAuto)
}

// ImpairWith is Impair with a chosen mechanism. A refused impairment
// changes nothing; a replaced one leaves the link unimpaired for the few
// milliseconds between removing the old and installing the new.
func (tb *Testbed) ImpairWith(link string, im Impairment, mechanism string) error {
	l, err := tb.parseLink(link)
	if err != nil {
		return err
	}
	if err := im.Validate(); err != nil {
		return err
	}
	switch mechanism {
	case MechanismAuto, "":
		mechanism = MechanismRelay
		if NetemAvailable() {
			mechanism = MechanismNetem
		}
	case MechanismNetem:
		if !NetemAvailable() {
			return fmt.Errorf("%w: this kernel has no netem qdisc (use the relay)", ErrBadImpairment)
		}
	case MechanismRelay:
	default:
		return fmt.Errorf("%w: mechanism %q (want auto, netem or relay)", ErrBadImpairment, mechanism)
	}
	for _, ns := range []string{tb.mustNetns(l.Node), tb.mustNetns(Switch)} {
		if !nsrun.Exists(ns) {
			return fmt.Errorf("testbed %s: namespace %s %w", tb.Prefix, ns, ErrNotFound)
		}
	}
	if im.Seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		im.Seed = binary.LittleEndian.Uint64(b[:]) | 1
	}
	unlock, err := tb.lockImpair()
	if err != nil {
		return err
	}
	defer unlock()
	if err := tb.clearLocked(l); err != nil {
		return err
	}
	if mechanism == MechanismNetem {
		return tb.applyNetem(l, im)
	}
	return tb.startRelay(l, im)
}

// ClearImpairment removes link's impairment: the relay is stopped and its
// filters removed, or the netem qdiscs deleted. A clean link is left alone.
func (tb *Testbed) ClearImpairment(link string) error {
	l, err := tb.parseLink(link)
	if err != nil {
		return err
	}
	unlock, err := tb.lockImpair()
	if err != nil {
		return err
	}
	defer unlock()
	return tb.clearLocked(l)
}

// ClearImpairments clears every link.
func (tb *Testbed) ClearImpairments() error {
	var errs []error
	for _, l := range tb.Links() {
		errs = append(errs, tb.ClearImpairment(l.String()))
	}
	return errors.Join(errs...)
}

// lockImpair serialises changes to impairments across processes (two CLI
// calls on the same link must not start two relays).
func (tb *Testbed) lockImpair() (func(), error) {
	if err := os.MkdirAll(tb.impairDir(), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(tb.impairDir(), ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

func (tb *Testbed) readImpairment(l LinkRef) (*LinkImpairment, error) {
	b, err := os.ReadFile(tb.impairFile(l, ".json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	li := &LinkImpairment{}
	if err := json.Unmarshal(b, li); err != nil {
		return nil, fmt.Errorf("parse %s: %w", tb.impairFile(l, ".json"), err)
	}
	return li, nil
}

func (tb *Testbed) clearLocked(l LinkRef) error {
	li, err := tb.readImpairment(l)
	if err != nil {
		return err
	}
	if li != nil && li.Mechanism == MechanismNetem {
		tb.removeNetem(l)
	}
	if li != nil && li.Mechanism == MechanismRelay && isRelay(li.PID, tb.Prefix, l) {
		if err := stopProcess(li.PID, 3*time.Second); err != nil {
			return fmt.Errorf("stop relay of %s: %w", l, err)
		}
	}
	// Whatever the record said: a relay killed without a chance to clean
	// up leaves its filters redirecting to a tap that is gone.
	removeRelayFilters(tb, l)
	for _, ext := range []string{".json", ".stats.json"} {
		if err := os.Remove(tb.impairFile(l, ext)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// isRelay checks that pid is still this link's relay, not a process that
// reused the number.
func isRelay(pid int, prefix string, l LinkRef) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(string(b), "\x00")
	return argsContain(args, "impair-relay") && argsContain(args, prefix) && argsContain(args, l.String())
}

func argsContain(args []string, s string) bool {
	for _, a := range args {
		if a == s {
			return true
		}
	}
	return false
}

// stopProcess sends SIGTERM, then SIGKILL after timeout, and waits until
// the process is gone or a zombie (its parent reaps it).
func stopProcess(pid int, timeout time.Duration) error {
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(timeout)
	killed := false
	for !isZombie(pid) {
		if time.Now().After(deadline) {
			if killed {
				return fmt.Errorf("process %d survives SIGKILL", pid)
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
			killed, deadline = true, time.Now().Add(timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}

// relayBinary is the program started as `BIN testbed impair-relay`: the
// running one (cflow, or a test binary whose TestMain dispatches it).
var relayBinary = os.Executable

// startRelay runs the relay in the switch namespace, so that Down, which
// kills every process of the testbed's namespaces, ends it, and waits until
// it has recorded itself.
func (tb *Testbed) startRelay(l LinkRef, im Impairment) error {
	bin, err := relayBinary()
	if err != nil {
		return err
	}
	spec, err := json.Marshal(im)
	if err != nil {
		return err
	}
	logPath := tb.impairFile(l, ".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "testbed", "impair-relay", "--prefix", tb.Prefix, "--link", l.String(), "--spec", string(spec))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = nsrun.Start(tb.mustNetns(Switch), cmd)
	logf.Close()
	if err != nil {
		return fmt.Errorf("start relay for %s: %w", l, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(10 * time.Second)
	for {
		if li, _ := tb.readImpairment(l); li != nil && li.PID == cmd.Process.Pid {
			return nil
		}
		select {
		case err := <-exited:
			removeRelayFilters(tb, l)
			return fmt.Errorf("relay for %s exited (%v): %s", l, err, lastLine(logPath))
		case <-deadline:
			_ = stopProcess(cmd.Process.Pid, time.Second)
			removeRelayFilters(tb, l)
			return fmt.Errorf("relay for %s did not come up in 10s (see %s)", l, logPath)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func lastLine(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// Impairments lists the impaired links, with whether each relay is alive.
func (tb *Testbed) Impairments() ([]LinkImpairment, error) {
	var out []LinkImpairment
	for _, l := range tb.Links() {
		li, err := tb.readImpairment(l)
		if err != nil {
			return out, err
		}
		if li == nil {
			continue
		}
		li.Running = li.Mechanism == MechanismNetem || isRelay(li.PID, tb.Prefix, l) && !isZombie(li.PID)
		if b, err := os.ReadFile(tb.impairFile(l, ".stats.json")); err == nil {
			_ = json.Unmarshal(b, &li.Stats)
		}
		out = append(out, *li)
	}
	return out, nil
}

var netemOnce struct {
	sync.Once
	ok bool
}

// NetemAvailable tries to add a netem qdisc in a scratch namespace; the
// answer is the kernel's, cached for the process.
func NetemAvailable() bool {
	netemOnce.Do(func() {
		_ = nsrun.DoNew(func() error {
			lo, err := netlink.LinkByName("lo")
			if err != nil {
				return err
			}
			q := netlink.NewNetem(netlink.QdiscAttrs{LinkIndex: lo.Attrs().Index, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT},
				netlink.NetemQdiscAttrs{Latency: 1000})
			netemOnce.ok = netlink.QdiscAdd(q) == nil
			return nil
		})
	})
	return netemOnce.ok
}

// applyNetem puts the same netem qdisc at the root of both ends. tc rather
// than netlink: the library has no netem seed.
func (tb *Testbed) applyNetem(l LinkRef, im Impairment) error {
	args := []string{"delay", strconv.FormatInt(im.Delay.Microseconds(), 10) + "us"}
	if im.Jitter > 0 {
		args = append(args, strconv.FormatInt(im.Jitter.Microseconds(), 10)+"us")
	}
	if im.Loss > 0 {
		args = append(args, "loss", strconv.FormatFloat(im.Loss, 'f', -1, 64)+"%")
	}
	if im.Rate > 0 {
		args = append(args, "rate", strconv.FormatUint(im.Rate, 10)+"bit")
	}
	args = append(args, "limit", strconv.Itoa(im.limit()), "seed", strconv.FormatUint(im.Seed, 10))
	ends := []struct{ node, ifname string }{{l.Node, l.NodeIf()}, {Switch, l.SwitchIf()}}
	for _, e := range ends {
		cmd := exec.Command("tc", append([]string{"qdisc", "replace", "dev", e.ifname, "root", "netem"}, args...)...)
		if out, err := nsrun.Output(tb.mustNetns(e.node), cmd); err != nil {
			tb.removeNetem(l)
			return fmt.Errorf("netem on %s/%s: %v: %s", e.node, e.ifname, err, out)
		}
	}
	return writeJSON(tb.impairFile(l, ".json"), LinkImpairment{Link: l.String(), Impairment: im, Mechanism: MechanismNetem, Since: time.Now().UTC()})
}

func (tb *Testbed) removeNetem(l LinkRef) {
	for _, e := range []struct{ node, ifname string }{{l.Node, l.NodeIf()}, {Switch, l.SwitchIf()}} {
		_ = nsrun.Run(tb.mustNetns(e.node), exec.Command("tc", "qdisc", "del", "dev", e.ifname, "root"))
	}
}
