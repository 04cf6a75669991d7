package experiment

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/testbed"
)

// Bad settings are refused before anything starts, with a message that
// names the flag.
func TestValidate(t *testing.T) {
	self, _ := os.Executable()
	ok := Options{SteadyState: time.Second, PostMigration: time.Second, Migrations: 2, Connections: 4, FPS: 30, OutDir: t.TempDir(), Binary: self}
	if err := ok.Validate(); err != nil {
		t.Fatalf("good options refused: %v", err)
	}
	imp := ok
	imp.Impair = map[string]testbed.Impairment{"client": {Delay: 10 * time.Millisecond}, "hostA-mgmt": {Rate: 100e6}}
	if err := imp.Validate(); err != nil {
		t.Fatalf("good impairments refused: %v", err)
	}
	file := filepath.Join(t.TempDir(), "f")
	_ = os.WriteFile(file, nil, 0o644)
	for name, mod := range map[string]func(*Options){
		"negative steady state":    func(o *Options) { o.SteadyState = -time.Second },
		"negative post-migration":  func(o *Options) { o.PostMigration = -time.Second },
		"negative migrations":      func(o *Options) { o.Migrations = -1 },
		"zero connections":         func(o *Options) { o.Connections = 0 },
		"zero fps":                 func(o *Options) { o.FPS = 0 },
		"out dir is a file":        func(o *Options) { o.OutDir = file },
		"out dir under a file":     func(o *Options) { o.OutDir = filepath.Join(file, "x") },
		"no binary":                func(o *Options) { o.Binary = "" },
		"binary is not executable": func(o *Options) { o.Binary = file },
		"impairment of no link":    func(o *Options) { o.Impair = map[string]testbed.Impairment{"hostC": {Delay: time.Millisecond}} },
		"negative delay":           func(o *Options) { o.Impair = map[string]testbed.Impairment{"client": {Delay: -time.Millisecond}} },
		"loss over 100%":           func(o *Options) { o.Impair = map[string]testbed.Impairment{"client-data": {Loss: 101}} },
	} {
		o := ok
		mod(&o)
		if err := o.Validate(); !errors.Is(err, ErrBadOptions) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	if os.Geteuid() == 0 {
		return // root writes anywhere; the permission case needs a user
	}
	ro := t.TempDir()
	_ = os.Chmod(ro, 0o500)
	o := ok
	o.OutDir = ro
	if err := o.Validate(); !errors.Is(err, ErrBadOptions) {
		t.Errorf("read-only out dir: %v", err)
	}
}

func TestRunDirNames(t *testing.T) {
	out := t.TempDir()
	now := time.Date(2026, 2, 18, 22, 24, 51, 0, time.UTC)
	a, err := makeRunDir(out, now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := makeRunDir(out, now)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(a) != "run_20260218_222451" || filepath.Base(b) != "run_20260218_222451_2" {
		t.Fatalf("%s %s", a, b)
	}
}

// The collector's state: the event flag marks one row, the migration
// marks every row it overlaps.
func TestRunState(t *testing.T) {
	s := &runState{host: "hostA"}
	s.begin()
	if h, active, ev := s.take(); h != "hostA" || !active || !ev {
		t.Fatalf("during: %s %v %v", h, active, ev)
	}
	if _, active, ev := s.take(); !active || ev {
		t.Fatalf("still during: %v %v", active, ev)
	}
	s.end("hostB")
	if h, active, ev := s.take(); h != "hostB" || active || ev {
		t.Fatalf("after: %s %v %v", h, active, ev)
	}
	// Begun and ended between two rows: the row still shows it.
	s.begin()
	s.end("hostA")
	if h, active, ev := s.take(); h != "hostA" || !active || !ev {
		t.Fatalf("short: %s %v %v", h, active, ev)
	}
}

func TestLogPathsInErrors(t *testing.T) {
	msg := "migration failed: checkpoint ws: criu failed: type NOTIFY errno 0\nlog file: /dev/shm/containerflow/x-hostA/ws-1/work/dump.log\n (see /dev/shm/containerflow/x-hostA/ws-1/work/dump.log)"
	got := logPath.FindAllString(msg, -1)
	if len(got) != 2 || got[0] != "/dev/shm/containerflow/x-hostA/ws-1/work/dump.log" || got[1] != got[0] {
		t.Fatalf("%q", got)
	}
}

func TestParseConditions(t *testing.T) {
	all, err := ParseConditions("")
	if err != nil || len(all) != 6 || all[0].Name != "baseline" || all[0].Migrate || !all[5].Limited || all[5].Compress != "zstd" || all[4].Compress != "" {
		t.Fatalf("defaults: %+v %v", all, err)
	}
	cs, err := ParseConditions("loss-2.5, loss-1pct,clean")
	if err != nil || len(cs) != 3 || cs[0].Name != "loss-2.5%" || cs[0].Loss != 2.5 || cs[1].Name != "loss-1%" || cs[1].Dir() != "loss-1pct" || !cs[2].Migrate {
		t.Fatalf("%+v %v", cs, err)
	}
	for _, bad := range []string{"loss-0", "loss-100%", "loss-x", "fast", "clean,clean", "loss-1%,loss-1pct"} {
		if _, err := ParseConditions(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
