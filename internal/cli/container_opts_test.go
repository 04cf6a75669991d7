package cli

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/containerflow/containerflow/internal/agent"
)

func TestRunOptions(t *testing.T) {
	f := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(f, []byte("# comment\n\nA=1\nB=two words\nA=from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := runOpts{user: "33:4", workdir: "/srv", ulimits: []string{"nofile=4096"}, volumes: []string{"/tmp:/data:ro"},
		memory: "256m", cpus: 0.5, envFiles: []string{f}}
	spec := agent.ContainerSpec{Env: []string{"A=from-flag"}, Args: []string{"app"}}
	if err := o.apply(&spec); err != nil {
		t.Fatal(err)
	}
	if spec.User.UID != 33 || spec.User.GID != 4 || spec.Cwd != "/srv" || len(spec.Rlimits) != 1 || spec.Rlimits[0].Hard != 4096 ||
		len(spec.Volumes) != 1 || !spec.Volumes[0].ReadOnly || spec.Resources.MemoryBytes != 256<<20 || spec.Resources.CPUs != 0.5 {
		t.Errorf("spec: %+v", spec)
	}
	// The flag comes last, so it wins: the runtime keeps the last value
	// of a name (TestMergeEnv).
	if want := []string{"A=1", "B=two words", "A=from-file", "A=from-flag"}; !slices.Equal(spec.Env, want) {
		t.Errorf("env %q, want %q", spec.Env, want)
	}
	for _, bad := range []runOpts{{user: "nobody"}, {ulimits: []string{"nofile"}}, {volumes: []string{"rel:/x"}},
		{memory: "lots"}, {envFiles: []string{filepath.Join(t.TempDir(), "missing")}}} {
		if err := bad.apply(&agent.ContainerSpec{Args: []string{"app"}}); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if err := (&runOpts{}).apply(&agent.ContainerSpec{}); err == nil {
		t.Error("no command and no image accepted")
	}
	if err := os.WriteFile(f, []byte("NOEQUALS\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := (&runOpts{envFiles: []string{f}}).apply(&agent.ContainerSpec{Args: []string{"app"}}); err == nil || !strings.Contains(err.Error(), ":1:") {
		t.Errorf("bad env file line: %v", err)
	}
}

// --cpu is --cpus under the spelling: the same request.
func TestCPUAlias(t *testing.T) {
	for _, args := range [][]string{{"--cpu", "1.25"}, {"--cpus", "1.25"}, {"--cpus", "3", "--cpu", "1.25"}} {
		var o runOpts
		fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
		o.addFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		spec := agent.ContainerSpec{Args: []string{"app"}}
		if err := o.apply(&spec); err != nil || spec.Resources.CPUs != 1.25 {
			t.Errorf("%v: cpus %v, %v", args, spec.Resources.CPUs, err)
		}
	}
}
