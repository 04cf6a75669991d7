package placement

import (
	"errors"
	"strings"
	"testing"
)

func TestPlaceMostRoomLeft(t *testing.T) {
	// a: 4 CPUs, 8 GiB, runs 2 CPUs/1 GiB; b: 8 CPUs/8 GiB, empty.
	// With the new 2 CPUs/2 GiB: a = max(4/4, 3/8) = 1.0,
	// b = max(2/8, 2/8) = 0.25. b has the most room left.
	hosts := []Host{host("a", 4, 8), host("b", 8, 8)}
	cs := []Container{ctr("x", 2, 1, "a")}
	got, err := Place(hosts, cs, ctr("new", 2, 2, ""))
	if err != nil || got != "b" {
		t.Fatalf("Place = %q, %v; want b", got, err)
	}
}

func TestPlaceDominantShareNotSum(t *testing.T) {
	// Both hosts are at 0.75: a by memory (12 of 16 GiB), b by CPU (3 of
	// 4). Adding 0.5 CPU: a = max(1.5/4, 0.75) = 0.75 (memory still
	// dominates), b = max(3.5/4, 1/16) = 0.875. So a, although a summed
	// CPU+memory measure would call a the fuller one.
	hosts := []Host{host("a", 4, 16), host("b", 4, 16)}
	cs := []Container{ctr("m", 1, 12, "a"), ctr("c", 3, 1, "b")}
	got, err := Place(hosts, cs, ctr("new", 0.5, 0, ""))
	if err != nil || got != "a" {
		t.Fatalf("Place = %q, %v; want a", got, err)
	}
}

func TestPlaceTiesByNameThenCount(t *testing.T) {
	// Identical empty hosts listed out of order: the first by name.
	hosts := []Host{host("b", 4, 4), host("a", 4, 4)}
	got, err := Place(hosts, nil, ctr("new", 1, 1, ""))
	if err != nil || got != "a" {
		t.Fatalf("Place = %q, %v; want a", got, err)
	}
	// Negligible requests leave the loads equal (0): the host with fewer
	// containers, b, rather than piling them all on a.
	cs := []Container{ctr("z", 0, 0, "a")}
	got, err = Place(hosts, cs, ctr("new", 0, 0, ""))
	if err != nil || got != "b" {
		t.Fatalf("Place = %q, %v; want b", got, err)
	}
}

func TestPlaceSkipsUnschedulable(t *testing.T) {
	// a is empty but unschedulable; b is half full and is the only choice.
	hosts := []Host{{Name: "a", CPUs: 4, MemoryBytes: 4 * gib, Unschedulable: true}, host("b", 4, 4)}
	cs := []Container{ctr("x", 2, 2, "b")}
	got, err := Place(hosts, cs, ctr("new", 1, 1, ""))
	if err != nil || got != "b" {
		t.Fatalf("Place = %q, %v; want b", got, err)
	}
}

func TestPlaceExactFit(t *testing.T) {
	// 0.1 + 0.2 + 0.7 CPUs is 1.0000000000000002 in floats: it must
	// still fit a 1-CPU host.
	hosts := []Host{host("a", 1, 1)}
	cs := []Container{ctr("x", 0.1, 0, "a"), ctr("y", 0.2, 0, "a")}
	if got, err := Place(hosts, cs, ctr("new", 0.7, 1, "")); err != nil || got != "a" {
		t.Fatalf("Place = %q, %v; want a", got, err)
	}
}

func TestPlaceErrors(t *testing.T) {
	hosts := []Host{host("a", 4, 8), host("b", 8, 4)}
	full := []Container{ctr("x", 3, 1, "a"), ctr("y", 7, 1, "b")}
	for _, tc := range []struct {
		name  string
		hosts []Host
		cs    []Container
		c     Container
		want  string
		is    error
	}{
		// 8 CPUs fit b, 8 GiB fit a, but no host has both.
		{"too big", hosts, nil, ctr("big", 8, 8, ""), "container big: requests 8 CPUs and 8.0 GiB memory: too big for every schedulable host", nil},
		// 2 CPUs fit either host empty; a has 1 free, b 1 free.
		{"no room", hosts, full, ctr("mid", 2, 1, ""), "container mid: requests 2 CPUs and 1.0 GiB memory: no schedulable host has that much free (most free: 1 CPUs on a", nil},
		{"no schedulable host", []Host{{Name: "a", CPUs: 1, MemoryBytes: 1, Unschedulable: true}}, nil, ctr("n", 0, 0, ""), "no schedulable host", ErrNoSchedulableHost},
		{"duplicate host", []Host{host("a", 1, 1), host("a", 2, 2)}, nil, ctr("n", 0, 0, ""), "host a listed twice", ErrInvalid},
		{"name taken", hosts, full, ctr("x", 1, 0, ""), "container x listed twice", ErrInvalid},
		{"negative", hosts, nil, ctr("n", -1, 0, ""), "must not be negative", ErrInvalid},
		{"unknown host", hosts, []Container{ctr("x", 1, 1, "nowhere")}, ctr("n", 0, 0, ""), "runs on unknown host nowhere", ErrInvalid},
		{"zero capacity", []Host{{Name: "a", CPUs: 0, MemoryBytes: gib}}, nil, ctr("n", 0, 0, ""), "capacity must be positive", ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Place(tc.hosts, tc.cs, tc.c)
			if err == nil {
				t.Fatalf("Place = %q, want an error", got)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			var u *UnplacedError
			if tc.is == nil && (!errors.As(err, &u) || u.Unplaced[0].Container != tc.c.Name) {
				t.Errorf("error %v: want an *UnplacedError naming %s", err, tc.c.Name)
			}
		})
	}
}
