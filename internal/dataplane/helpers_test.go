package dataplane

import (
	"errors"
	"net"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// requireRoot skips tests that need privileges the process lacks.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN) to load BPF programs and create namespaces")
	}
}

// loadOrSkip loads a Dataplane, skipping when the kernel cannot run BPF at
// all (and failing on every other error).
func loadOrSkip(t testing.TB, opts Options) *Dataplane {
	t.Helper()
	requireRoot(t)
	d, err := Load(opts)
	if errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSYS) {
		t.Skipf("BPF unavailable on this kernel: %v", err)
	}
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return d
}

// setPortForTest registers a port in the tables without attaching anything,
// for BPF_PROG_TEST_RUN tests whose packets "arrive" on lo.
func setPortForTest(t testing.TB, d *Dataplane, port, ifindex uint32) {
	t.Helper()
	if err := d.objs.PortByIfindex.Put(ifindex, port); err != nil {
		t.Fatal(err)
	}
	if err := d.objs.Ports.Put(port, bpfPortInfo{Ifindex: ifindex}); err != nil {
		t.Fatal(err)
	}
}

func loIndex(t testing.TB) uint32 {
	t.Helper()
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	return uint32(lo.Index)
}

// runProg sends one frame through the program with BPF_PROG_TEST_RUN and
// returns the verdict and the frame as the program left it.
func runProg(t *testing.T, d *Dataplane, in []byte) (uint32, []byte) {
	t.Helper()
	opts := ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+256)}
	ret, err := d.objs.SwitchIngress.Run(&opts)
	if err != nil {
		t.Fatalf("test run: %v", err)
	}
	return ret, opts.DataOut
}

func globals(t *testing.T, d *Dataplane) map[string]uint64 {
	t.Helper()
	c, err := d.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c.Global
}

func portCounters(t *testing.T, d *Dataplane, port uint32) PortCounters {
	t.Helper()
	c, err := d.portCounters(port)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func isErr(err, target error) bool { return errors.Is(err, target) }
