package cnet

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/containerflow/containerflow/internal/nsrun"
)

// Two namespaces joined by a veth; Lock on one must stop traffic both ways
// (and keep loopback), Unlock must restore it, and CRIU-named tables must
// be removed by RemoveCRIULocks.
func TestLockUnlock(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for namespaces and nftables (CI runs as root)")
	}
	a, b := fmt.Sprintf("cnt%d-a", os.Getpid()), fmt.Sprintf("cnt%d-b", os.Getpid())
	for _, n := range []string{a, b} {
		if err := nsrun.Create(n); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = nsrun.Delete(n) })
		if err := Quiet(n); err != nil {
			t.Fatal(err)
		}
	}
	err := nsrun.Do(a, func() error {
		bns, err := os.Open(nsrun.Path(b))
		if err != nil {
			return err
		}
		defer bns.Close()
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "va"}, PeerName: "vb", PeerNamespace: netlink.NsFd(int(bns.Fd()))}
		if err := netlink.LinkAdd(v); err != nil {
			return err
		}
		l, _ := netlink.LinkByName("va")
		h, _ := netlink.NewHandle()
		defer h.Close()
		if err := AddAddr(h, l, netip.MustParsePrefix("198.18.9.1/24")); err != nil {
			return err
		}
		return netlink.LinkSetUp(l)
	})
	if err != nil {
		t.Fatal(err)
	}
	err = nsrun.Do(b, func() error {
		l, err := netlink.LinkByName("vb")
		if err != nil {
			return err
		}
		h, _ := netlink.NewHandle()
		defer h.Close()
		if err := AddAddr(h, l, netip.MustParsePrefix("198.18.9.2/24")); err != nil {
			return err
		}
		return netlink.LinkSetUp(l)
	})
	if err != nil {
		t.Fatal(err)
	}
	var l net.Listener
	_ = nsrun.Do(b, func() (err error) { l, err = net.Listen("tcp4", "198.18.9.2:7100"); return })
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	reach := func(timeout time.Duration) error {
		return nsrun.Do(a, func() error {
			c, err := net.DialTimeout("tcp4", "198.18.9.2:7100", timeout)
			if err == nil {
				c.Close()
			}
			return err
		})
	}
	if err := reach(2 * time.Second); err != nil {
		t.Fatalf("before lock: %v", err)
	}
	if err := Lock(b); err != nil {
		t.Fatal(err)
	}
	if locked, err := Locked(b); err != nil || !locked {
		t.Fatalf("Locked = %v, %v", locked, err)
	}
	if err := reach(300 * time.Millisecond); err == nil {
		t.Fatal("reached a locked namespace")
	}
	// Loopback still works inside the locked namespace.
	if err := nsrun.Do(b, func() error {
		c, err := net.DialTimeout("tcp4", "198.18.9.2:7100", time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		t.Fatalf("loopback in a locked namespace: %v", err)
	}
	if err := Unlock(b); err != nil {
		t.Fatal(err)
	}
	if err := Unlock(b); err != nil {
		t.Fatalf("second unlock: %v", err)
	}
	if err := reach(2 * time.Second); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	// A table shaped like CRIU's is found and removed.
	if out, err := nsrun.Output(b, exec.Command("nft", "add", "table", "inet", "CRIU-1234")); err != nil {
		t.Fatalf("nft: %v %s", err, out)
	}
	if err := RemoveCRIULocks(b); err != nil {
		t.Fatal(err)
	}
	out, _ := nsrun.Output(b, exec.Command("nft", "list", "tables"))
	if strings.Contains(string(out), "CRIU-") {
		t.Fatalf("CRIU table left: %s", out)
	}
}
