package testbed

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerflow/containerflow/internal/nsrun"
	"github.com/containerflow/containerflow/internal/privfs"
)

// AgentStateDir is where a host's agent keeps bundles, runc state, images
// and logs. With PrivateFS it is a tmpfs only that agent sees (the machine
// sees an empty directory); the host directory around it keeps what the
// testbed itself reads: the agent's socket and its log.
func (tb *Testbed) AgentStateDir(host string) string {
	if tb.PrivateFS {
		return filepath.Join(tb.HostDir(host), "state")
	}
	return tb.HostDir(host)
}

// privateFSArgs are the agent flags of a PrivateFS testbed. The agent sets
// up its own view (`agent serve --private-fs`); the one namespace name it
// keeps from the machine's /run/netns is the switch's, which it steers
// through directly when no controller runs — the testbed's wiring, which
// a real host reaches over the network instead.
func (tb *Testbed) privateFSArgs(host, steer string) []string {
	if !tb.PrivateFS {
		return nil
	}
	// Given again after the common flags: the last --state-dir wins.
	args := []string{"--private-fs", "--state-dir", tb.AgentStateDir(host)}
	if strings.HasPrefix(steer, "bridge:") {
		args = append(args, "--private-fs-keep", nsrun.Path(tb.mustNetns(Switch)))
	}
	return args
}

// killPrivateViews kills every process in the private mount namespace of
// one of the testbed's agents: the agent, and what it started there and
// did not move elsewhere yet (runc, CRIU, a container init before it
// joins its cgroup). The container network namespaces such an agent made
// are mounted only in its view, so Down cannot find them by name; they go
// when their last process does and the view with its agent. Container
// processes, which have views of their own, are killed through their
// cgroups (removeHostLeftovers).
//
// Only namespaces of processes started with --private-fs are taken, and
// never the caller's or init's, whatever the host namespaces hold.
func killPrivateViews(prefix string) error {
	views := map[string]bool{}
	own, _ := privfs.MountNS("self")
	initNS, _ := privfs.MountNS("1")
	// Every host a testbed can have: Down works from the prefix alone,
	// also when Up died before it saved how many hosts it was making.
	for _, h := range HostNames(MaxHosts) {
		pids, err := nsrun.Pids(prefix + "-" + h)
		if err != nil {
			continue // no such namespace (any more)
		}
		for _, pid := range pids {
			if !startedPrivate(pid) {
				continue
			}
			if ns, err := privfs.MountNS(strconv.Itoa(pid)); err == nil && ns != own && ns != initNS {
				views[ns] = true
			}
		}
	}
	if len(views) == 0 {
		return nil
	}
	live, err := nsrun.KillUntilGone(func() ([]int, error) {
		ents, err := os.ReadDir("/proc")
		if err != nil {
			return nil, err
		}
		var pids []int
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if ns, err := privfs.MountNS(e.Name()); err == nil && views[ns] {
				pids = append(pids, pid)
			}
		}
		return pids, nil
	}, 3*time.Second)
	if err == nil && live > 0 {
		err = fmt.Errorf("testbed %s: %d processes of the agents' private views still alive after SIGKILL", prefix, live)
	}
	return err
}

func startedPrivate(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return false
	}
	for _, a := range strings.Split(string(b), "\x00") {
		if a == "--private-fs" {
			return true
		}
	}
	return false
}
