package runtime

import (
	"errors"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseOptions(t *testing.T) {
	if u, err := ParseUser("1000"); err != nil || u != (User{1000, 1000}) {
		t.Errorf("1000: %+v %v", u, err)
	}
	if u, err := ParseUser("33:4"); err != nil || u != (User{33, 4}) {
		t.Errorf("33:4: %+v %v", u, err)
	}
	for _, bad := range []string{"", "www-data", "1:x", "-1", "1:2:3"} {
		if _, err := ParseUser(bad); !errors.Is(err, ErrBadSpec) {
			t.Errorf("user %q: %v", bad, err)
		}
	}
	if l, err := ParseUlimit("nofile=4096:8192"); err != nil || l != (Rlimit{"RLIMIT_NOFILE", 4096, 8192}) {
		t.Errorf("nofile: %+v %v", l, err)
	}
	if l, err := ParseUlimit("core=unlimited"); err != nil || l.Soft != unix.RLIM_INFINITY || l.Hard != unix.RLIM_INFINITY {
		t.Errorf("core: %+v %v", l, err)
	}
	for _, bad := range []string{"nofile", "files=3", "nofile=x", "nofile=10:5", "nofile=1:y"} {
		if _, err := ParseUlimit(bad); !errors.Is(err, ErrBadSpec) {
			t.Errorf("ulimit %q: %v", bad, err)
		}
	}
	if v, err := ParseVolume("/srv/data:/data:ro"); err != nil || v != (Volume{"/srv/data", "/data", true}) {
		t.Errorf("volume: %+v %v", v, err)
	}
	for _, bad := range []string{"/a", "a:/b", "/a:b", "/a:/b:rx", "/a:/proc/x", "/a:/", "/a:/b:ro:x"} {
		if _, err := ParseVolume(bad); !errors.Is(err, ErrBadSpec) {
			t.Errorf("volume %q: %v", bad, err)
		}
	}
	for s, want := range map[string]int64{"512m": 512 << 20, "2g": 2 << 30, "1048576": 1 << 20, "64MiB": 64 << 20, "1.5k": 1536} {
		if got, err := ParseBytes(s); err != nil || got != want {
			t.Errorf("bytes %q: %d %v, want %d", s, got, err, want)
		}
	}
	for _, bad := range []string{"", "m", "-1m", "12x"} {
		if _, err := ParseBytes(bad); err == nil {
			t.Errorf("bytes %q accepted", bad)
		}
	}
}

// The default open-files limit follows the runtime's own hard limit, and
// a spec's limit replaces it.
func TestRlimits(t *testing.T) {
	var own unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &own); err != nil {
		t.Fatal(err)
	}
	rl, err := Spec{}.rlimits()
	if want := min(own.Max, DefaultNofile); err != nil || len(rl) != 1 || rl[0].Hard != want || rl[0].Soft != want {
		t.Fatalf("defaults: %+v %v, want nofile %d", rl, err, want)
	}
	rl, err = Spec{Rlimits: []Rlimit{{"RLIMIT_NOFILE", 100, 200}, {"RLIMIT_CORE", 0, 0}}}.rlimits()
	if err != nil || len(rl) != 2 || rl[0] != (Rlimit{"RLIMIT_NOFILE", 100, 200}) || rl[1].Type != "RLIMIT_CORE" {
		t.Fatalf("overrides: %+v %v", rl, err)
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"PATH=/bin", "HOME=/tmp"}, []string{"A=1", "PATH=/opt/bin", "A=2"})
	want := []string{"PATH=/opt/bin", "HOME=/tmp", "A=2"}
	if !slices.Equal(got, want) {
		t.Fatalf("%q, want %q", got, want)
	}
}
