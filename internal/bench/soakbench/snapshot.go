package soakbench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/containerflow/containerflow/internal/nsrun"
	"github.com/containerflow/containerflow/internal/testbed"
)

// Host is what the testbed holds on the machine, as sorted lists of names,
// so a drift says what was left, not only how much.
type Host struct {
	Mounts     []string `json:"mounts"`     // mount points under the testbed's dirs
	Cgroups    []string `json:"cgroups"`    // dirs below containerflow/PREFIX-HOST in every hierarchy
	Nftables   []string `json:"nftables"`   // "netns: family table" in the testbed's namespaces
	Netns      []string `json:"netns"`      // PREFIX-*
	BPFPins    []string `json:"bpf_pins"`   // files under the testbed's pin dir
	RunFiles   []string `json:"run_files"`  // files under /run/containerflow/PREFIX (logs excluded)
	ShmFiles   []string `json:"shm_files"`  // files under /dev/shm/containerflow/PREFIX-*
	TempFiles  []string `json:"temp_files"` // cflow-kdat-*, *criu*, *PREFIX* in /tmp and /var/tmp
	Logs       int      `json:"logs"`       // *.log files under the run dir (kept by design: counted apart)
	LogBytes   int64    `json:"log_bytes"`
	CRIU       []string `json:"criu"` // `criu` processes still running
	Containers []string `json:"containers"`
}

func (s *soak) hostSnapshot() Host {
	p := s.o.Prefix
	var h Host
	if f, err := os.Open("/proc/self/mountinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fl := strings.Fields(sc.Text())
			if len(fl) < 5 {
				continue
			}
			mp := fl[4]
			if strings.Contains(mp, "/containerflow/"+p+"/") || strings.HasSuffix(mp, "/containerflow/"+p) ||
				strings.HasPrefix(mp, "/dev/shm/containerflow/"+p+"-") || strings.HasPrefix(mp, "/run/netns/"+p+"-") ||
				strings.HasPrefix(mp, s.tb.PinPath()) {
				h.Mounts = append(h.Mounts, mp)
			}
		}
		f.Close()
	}
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/containerflow/" + p + "-*")
	more, _ := filepath.Glob("/sys/fs/cgroup/containerflow/" + p + "-*")
	for _, r := range append(roots, more...) {
		_ = filepath.WalkDir(r, func(path string, d fs.DirEntry, err error) error {
			// The agent's own parent (PREFIX-HOST) is made with its first
			// container and kept: only what is below it is a container's.
			if err == nil && d.IsDir() && path != r {
				h.Cgroups = append(h.Cgroups, path)
			}
			return nil
		})
	}
	h.Netns, _ = nsrun.List(p + "-")
	for _, ns := range h.Netns {
		out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "tables").Output()
		if err != nil {
			continue
		}
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if l = strings.TrimPrefix(l, "table "); l != "" {
				h.Nftables = append(h.Nftables, ns+": "+l)
			}
		}
	}
	h.BPFPins = files(s.tb.PinPath(), nil)
	h.RunFiles = files(s.tb.Dir(), func(path string) bool {
		// Logs, and the CRIU logs of failed migrations (the agent keeps
		// the last 20 by design), grow or rotate: counted, not diffed.
		if strings.HasSuffix(path, ".log") || strings.Contains(path, ".log.") || strings.Contains(path, "/migration-logs/") {
			h.Logs++
			if st, err := os.Stat(path); err == nil {
				h.LogBytes += st.Size()
			}
			return false
		}
		// The impairment's lock file is made once, on the first impair,
		// and kept on purpose (a lock must not vanish under a waiter).
		if strings.HasSuffix(path, "/impair/.lock") {
			return false
		}
		return true
	})
	shm, _ := filepath.Glob("/dev/shm/containerflow/" + p + "-*")
	for _, d := range shm {
		h.ShmFiles = append(h.ShmFiles, files(d, nil)...)
	}
	for _, d := range []string{os.TempDir(), "/var/tmp"} {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			// What the agents and CRIU make there, and anything named
			// after the testbed; not every cflow-* file: other runs on
			// the machine (tests, benchmarks) make their own.
			n := strings.ToLower(e.Name())
			if strings.HasPrefix(n, "cflow-kdat-") || strings.Contains(n, "criu") || strings.Contains(n, p) {
				h.TempFiles = append(h.TempFiles, filepath.Join(d, e.Name()))
			}
		}
	}
	// Only this testbed's: other testbeds may run CRIU on the machine.
	for _, pid := range pidsNamed("criu") {
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			t, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
			if strings.Contains(t, "/containerflow/"+p) {
				h.CRIU = append(h.CRIU, strconv.Itoa(pid))
				break
			}
		}
	}
	for _, host := range s.tb.Hosts() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		l, err := s.clients[host].List(ctx)
		cancel()
		for _, c := range l {
			h.Containers = append(h.Containers, host+"/"+c.Name+" "+c.State)
		}
		if err != nil {
			h.Containers = append(h.Containers, host+": "+err.Error())
		}
	}
	for _, l := range [][]string{h.Mounts, h.Cgroups, h.Nftables, h.Netns, h.BPFPins, h.RunFiles, h.ShmFiles, h.TempFiles} {
		sort.Strings(l)
	}
	return h
}

// files lists regular files and sockets under dir (keep filters them).
func files(dir string, keep func(string) bool) []string {
	var out []string
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if keep == nil || keep(path) {
			out = append(out, path)
		}
		return nil
	})
	return out
}

func pidsNamed(comm string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if strings.TrimSpace(string(b)) == comm {
			out = append(out, pid)
		}
	}
	return out
}

// HostDrift is what the end snapshot holds that the start did not, and
// the reverse.
type HostDrift struct {
	Added   map[string][]string `json:"added,omitempty"`
	Removed map[string][]string `json:"removed,omitempty"`
}

func (d HostDrift) Empty() bool { return len(d.Added) == 0 && len(d.Removed) == 0 }

func diffHost(a, b Host) HostDrift {
	d := HostDrift{Added: map[string][]string{}, Removed: map[string][]string{}}
	for _, c := range []struct {
		k    string
		x, y []string
	}{
		{"mounts", a.Mounts, b.Mounts}, {"cgroups", a.Cgroups, b.Cgroups}, {"nftables", a.Nftables, b.Nftables},
		{"netns", a.Netns, b.Netns}, {"bpf_pins", a.BPFPins, b.BPFPins}, {"run_files", a.RunFiles, b.RunFiles},
		{"shm_files", a.ShmFiles, b.ShmFiles}, {"temp_files", a.TempFiles, b.TempFiles}, {"criu", a.CRIU, b.CRIU},
		{"containers", a.Containers, b.Containers},
	} {
		in := map[string]bool{}
		for _, v := range c.x {
			in[v] = true
		}
		for _, v := range c.y {
			if !in[v] {
				d.Added[c.k] = append(d.Added[c.k], v)
			}
			delete(in, v)
		}
		for v := range in {
			d.Removed[c.k] = append(d.Removed[c.k], v)
		}
		sort.Strings(d.Removed[c.k])
	}
	if len(d.Added) == 0 {
		d.Added = nil
	}
	if len(d.Removed) == 0 {
		d.Removed = nil
	}
	return d
}

// Proc is one sample of a daemon.
type Proc struct {
	N          int    `json:"after_migration"`
	Role       string `json:"role"` // agent-hostA, agent-hostB, controller
	PID        int    `json:"pid"`
	RSSKiB     int    `json:"rss_kib"`
	FDs        int    `json:"fds"`
	Threads    int    `json:"threads"`
	Goroutines int    `json:"goroutines"` // from its /v1/health; -1 if it did not answer
}

func (s *soak) procSamples(n int) []Proc {
	var out []Proc
	for _, h := range s.tb.Hosts() {
		out = append(out, procSample(n, "agent-"+h, s.tb.AgentPID(h), s.tb.AgentSocket(h)))
	}
	return append(out, procSample(n, "controller", s.tb.ControllerPID(), s.tb.ControllerSocket()))
}

func procSample(n int, role string, pid int, socket string) Proc {
	p := Proc{N: n, Role: role, PID: pid, Goroutines: -1}
	if pid == 0 {
		return p
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(l, ":")
			f := strings.Fields(v)
			if len(f) == 0 {
				continue
			}
			switch k {
			case "VmRSS":
				p.RSSKiB, _ = strconv.Atoi(f[0])
			case "Threads":
				p.Threads, _ = strconv.Atoi(f[0])
			}
		}
	}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	p.FDs = len(fds)
	hc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
	if resp, err := hc.Get("http://x/v1/health"); err == nil {
		var h struct {
			Goroutines int `json:"goroutines"`
		}
		if json.NewDecoder(resp.Body).Decode(&h) == nil {
			p.Goroutines = h.Goroutines
		}
		resp.Body.Close()
	}
	hc.CloseIdleConnections()
	return p
}

// Bounds is what a daemon may grow by over a run before it counts as
// drift. A Go process's RSS moves with its heap target, so a small
// absolute floor keeps a 2 MiB GC step on a 20 MiB agent from reading as
// a leak; anything that grows with the number of migrations exceeds it
// within a few hundred.
type Bounds struct {
	RSSPercent float64 `json:"rss_percent"`
	RSSKiB     int     `json:"rss_floor_kib"`
	FDs        int     `json:"fds"`
	Goroutines int     `json:"goroutines"`
	Threads    int     `json:"threads"`
}

// DefaultBounds: RSS +20% (at least +8 MiB), fds +10, goroutines +20,
// threads +10; the host: nothing left (exact).
var DefaultBounds = Bounds{RSSPercent: 20, RSSKiB: 8 << 10, FDs: 10, Goroutines: 20, Threads: 10}

// ProcDrift compares a daemon's first and last sample within the longest
// life it had in the run (a killed and restarted daemon starts over).
type ProcDrift struct {
	Role        string   `json:"role"`
	PID         int      `json:"pid"`
	Lives       int      `json:"lives"` // distinct pids seen
	From, To    Proc     `json:"-"`
	FromN       int      `json:"from_migration"`
	ToN         int      `json:"to_migration"`
	RSSKiB      [2]int   `json:"rss_kib"`
	FDs         [2]int   `json:"fds"`
	Threads     [2]int   `json:"threads"`
	Goroutines  [2]int   `json:"goroutines"`
	Exceeded    []string `json:"exceeded,omitempty"`
	NotJudged   string   `json:"not_judged,omitempty"`
	WithinBound bool     `json:"within_bound"`
}

// minSpan is how many migrations a life must span to be judged.
const minSpan = 10

// warmup: samples before this migration are reported, not judged. The
// first migrations open the daemons' pools (HTTP connections to the peer
// and the controller, CRIU's kernel cache, the tap) once: 8 -> 28
// goroutines and +7 MiB over the first four here, then flat.
const warmup = 10

func procDrift(samples []Proc, b Bounds) []ProcDrift {
	var out []ProcDrift
	for _, role := range []string{"agent-" + testbed.HostA, "agent-" + testbed.HostB, "controller"} {
		lives := map[int][]Proc{}
		var order []int
		for _, p := range samples {
			if p.Role != role || p.PID == 0 || p.N < warmup {
				continue
			}
			if _, ok := lives[p.PID]; !ok {
				order = append(order, p.PID)
			}
			lives[p.PID] = append(lives[p.PID], p)
		}
		d := ProcDrift{Role: role, Lives: len(order)}
		best := -1
		for _, pid := range order {
			l := lives[pid]
			if span := l[len(l)-1].N - l[0].N; best < 0 || span > best {
				best, d.PID, d.From, d.To = span, pid, l[0], l[len(l)-1]
			}
		}
		if best < 0 {
			// A run shorter than the warm-up has nothing to judge, which
			// is not a failure.
			d.NotJudged = fmt.Sprintf("no sample from migration %d on", warmup)
			d.WithinBound = true
			out = append(out, d)
			continue
		}
		d.FromN, d.ToN = d.From.N, d.To.N
		d.RSSKiB = [2]int{d.From.RSSKiB, d.To.RSSKiB}
		d.FDs = [2]int{d.From.FDs, d.To.FDs}
		d.Threads = [2]int{d.From.Threads, d.To.Threads}
		d.Goroutines = [2]int{d.From.Goroutines, d.To.Goroutines}
		if best < minSpan {
			d.NotJudged = fmt.Sprintf("its longest life spanned %d migrations (< %d)", best, minSpan)
			d.WithinBound = true
			out = append(out, d)
			continue
		}
		if lim := max(int(float64(d.From.RSSKiB)*b.RSSPercent/100), b.RSSKiB); d.To.RSSKiB-d.From.RSSKiB > lim {
			d.Exceeded = append(d.Exceeded, fmt.Sprintf("rss +%d KiB > %d", d.To.RSSKiB-d.From.RSSKiB, lim))
		}
		if d.To.FDs-d.From.FDs > b.FDs {
			d.Exceeded = append(d.Exceeded, fmt.Sprintf("fds +%d > %d", d.To.FDs-d.From.FDs, b.FDs))
		}
		if d.To.Threads-d.From.Threads > b.Threads {
			d.Exceeded = append(d.Exceeded, fmt.Sprintf("threads +%d > %d", d.To.Threads-d.From.Threads, b.Threads))
		}
		if d.From.Goroutines >= 0 && d.To.Goroutines >= 0 && d.To.Goroutines-d.From.Goroutines > b.Goroutines {
			d.Exceeded = append(d.Exceeded, fmt.Sprintf("goroutines +%d > %d", d.To.Goroutines-d.From.Goroutines, b.Goroutines))
		}
		d.WithinBound = len(d.Exceeded) == 0
		out = append(out, d)
	}
	return out
}
