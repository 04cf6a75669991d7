package dataplane

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// Tests of pure Go helpers: they need no privileges.

func TestConversions(t *testing.T) {
	a := netip.MustParseAddr("198.18.1.2")
	k, err := addrKey("ip", a)
	if err != nil || keyAddr(k) != a {
		t.Fatalf("addrKey/keyAddr round trip: %v %v", keyAddr(k), err)
	}
	if k2, _ := addrKey("ip", netip.MustParseAddr("::ffff:198.18.1.2")); k2 != k {
		t.Errorf("IPv4-mapped address not unmapped")
	}
	if _, err := addrKey("ip", netip.MustParseAddr("2001:db8::1")); !errors.Is(err, ErrInvalid) {
		t.Errorf("IPv6: %v", err)
	}
	if netPort(netPort(8080)) != 8080 {
		t.Errorf("netPort is not its own inverse")
	}
	for in, want := range map[string]string{"NonIp": "non_ip", "TtlExceeded": "ttl_exceeded", "LbNoMember": "lb_no_member"} {
		if got := snake(in); got != want {
			t.Errorf("snake(%q) = %q, want %q", in, got, want)
		}
	}
	for _, s := range []string{"tcp", "udp", "icmp"} {
		p, err := ParseProto(s)
		if err != nil || p.String() != s {
			t.Errorf("ParseProto(%q) = %v, %v", s, p, err)
		}
	}
	if _, err := ParseProto("sctp"); !errors.Is(err, ErrInvalid) {
		t.Errorf("ParseProto(sctp): %v", err)
	}
}

func TestLimitsFromBTF(t *testing.T) {
	// The Go limits are generated from consts.h; the member array of the
	// generated service struct must agree with them.
	if len(bpfService{}.Members) != MaxMembers || MaxPorts < 1 || MaxAddresses < 1 {
		t.Fatalf("limits: members %d/%d ports %d addresses %d", len(bpfService{}.Members), MaxMembers, MaxPorts, MaxAddresses)
	}
}

func TestUnpin(t *testing.T) {
	requireRoot(t)
	pin := filepath.Join(t.TempDir(), "bpffs")
	if err := EnsureBPFFS(pin); err != nil {
		t.Fatalf("mount bpffs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(pin, unix.MNT_DETACH) })
	if err := EnsureBPFFS(pin); err != nil {
		t.Fatalf("EnsureBPFFS on a bpffs: %v", err)
	}
	dir := filepath.Join(pin, "sw")
	d := loadOrSkip(t, Options{PinPath: dir})
	if entries, _ := os.ReadDir(dir); len(entries) < 10 {
		t.Fatalf("pinned: %v", entries)
	}
	if err := d.Unpin(); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left after Unpin: %v", entries)
	}
	// Still usable until closed.
	if err := d.SetFlood(false); err != nil {
		t.Errorf("SetFlood after Unpin: %v", err)
	}
}
