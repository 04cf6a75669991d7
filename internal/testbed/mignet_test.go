package testbed

import (
	"errors"
	"slices"
	"testing"

	"github.com/containerflow/containerflow/internal/nsrun"
)

// The default testbed's agents get exactly the flags they always had;
// --migration-net data moves only their peers (and listeners) to the data
// network; --link-rate adds one flag.
func TestMigrationNetAgentArgs(t *testing.T) {
	def := &Testbed{Prefix: "targs", TLS: true}
	want := []string{"--tls-dir", def.PKIDir(), "--listen", "198.19.0.11:7070"}
	if got := def.listenArgs(HostA); !slices.Equal(got, want) {
		t.Errorf("default listen: %q, want %q", got, want)
	}
	if got := def.peerArgs(HostA); !slices.Equal(got, []string{"--peer", "hostB=https://198.19.0.12:7070"}) {
		t.Errorf("default peers: %q", got)
	}
	if got := def.linkRateArgs(); got != nil {
		t.Errorf("default link rate: %q", got)
	}
	plain := &Testbed{Prefix: "targs"}
	if got := plain.listenArgs(HostB); !slices.Equal(got, []string{"--insecure", "--listen", "198.19.0.12:7070"}) {
		t.Errorf("plain listen: %q", got)
	}

	data := &Testbed{Prefix: "targs", TLS: true, Insecure: true, HostCount: 3, MigrationNet: MigrationNetData, LinkRate: 80e6}
	want = []string{"--tls-dir", data.PKIDir(), "--listen", "0.0.0.0:7070", "--advertise-url", "https://198.19.0.11:7070",
		"--insecure", "--insecure-listen", "0.0.0.0:7071"}
	if got := data.listenArgs(HostA); !slices.Equal(got, want) {
		t.Errorf("data listen: %q, want %q", got, want)
	}
	want = []string{"--peer", "hostB=https://198.18.0.12:7070", "--plain-peer", "hostB=http://198.18.0.12:7071",
		"--peer", "hostC=https://198.18.0.203:7070", "--plain-peer", "hostC=http://198.18.0.203:7071"}
	if got := data.peerArgs(HostA); !slices.Equal(got, want) {
		t.Errorf("data peers: %q, want %q", got, want)
	}
	if got := data.linkRateArgs(); !slices.Equal(got, []string{"--link-rate", "80mbit"}) {
		t.Errorf("link rate: %q", got)
	}
}

// Bad options are refused before anything is created.
func TestBadMigrationOptions(t *testing.T) {
	const p = "tbadmig"
	if _, err := Up(Config{Prefix: p, MigrationNet: "wifi"}); !errors.Is(err, ErrBadMigNet) {
		t.Errorf("migration net wifi: want ErrBadMigNet, got %v", err)
	}
	if _, err := Up(Config{Prefix: p, LinkRate: 500_000}); !errors.Is(err, ErrBadImpairment) {
		t.Errorf("link rate 500kbit: want a refusal, got %v", err)
	}
	if left, _ := nsrun.List(p + "-"); len(left) > 0 {
		_ = Down(p)
		t.Fatalf("a refused up left %v", left)
	}
}
