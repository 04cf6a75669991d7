package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerflow/containerflow/internal/cnet"
	"github.com/containerflow/containerflow/internal/criu"
	"github.com/containerflow/containerflow/internal/mounts"
	"github.com/containerflow/containerflow/internal/nsrun"
	"github.com/containerflow/containerflow/internal/pki"
	"github.com/containerflow/containerflow/internal/runtime"
)

// Sentinel errors, mapped to HTTP statuses by the API.
var (
	ErrBadRequest = errors.New("bad request")
	ErrNotFound   = errors.New("not found")
	ErrConflict   = errors.New("conflict")
)

// Steerer points the switch at a host for a container address.
type Steerer interface {
	Steer(ctx context.Context, ip netip.Addr, mac net.HardwareAddr, host string) error
}

// Config configures one agent.
type Config struct {
	Name        string            // host name, e.g. hostA
	StateDir    string            // bundles, runc state, logs, container specs
	ImagesDir   string            // checkpoint images (tmpfs: /dev/shm/...)
	NetnsPrefix string            // container namespaces are NetnsPrefix+NAME
	HostNetns   string            // namespace with the uplink; "" = the agent's own
	Uplink      string            // interface containers' macvlans hang off
	PrefixLen   int               // prefix length of the data network
	Peers       map[string]string // host name -> agent base URL (https:// with TLS)
	// TLS, when set, is this agent's identity: peers are called over mutual
	// TLS 1.3 with it, and calls over the TLS listener (TLSConfig) are
	// checked against the caller's identity (identity.go).
	TLS *pki.Identity
	// PlainPeers are the peers' plain-HTTP listeners (agents started with
	// --insecure), which a migration with Transport "plain" uses.
	PlainPeers map[string]string
	// Operators are the identities that may do users' operations (default:
	// cli and controller, which runs the fleet's operations).
	Operators []string
	Steerer   Steerer
	Token     string // bearer token for writes; "" disables auth
	CRIU      string // CRIU binary; found with criu.Find when empty
	BinDir    string // host directory bind-mounted read-only at /opt/cflow/bin
	// CRIUTimeout bounds one checkpoint or restore (default 20 s). A CRIU
	// that dies mid-restore can leave runc waiting forever on the
	// half-restored tasks; the timeout turns that into a rollback.
	CRIUTimeout time.Duration
	// HookCommand and HookSocket let this agent take the address of an
	// incoming container from inside a runc-engine restore (see hook.go):
	// the command (e.g. cflow agent hook) is run by CRIU and calls back on
	// the socket. The direct engine needs neither (CRIU notifies the agent
	// itself); without a Steerer the source steers.
	HookCommand []string
	HookSocket  string
	// KeepImages leaves each migration's images and CRIU logs in ImagesDir
	// (for inspection) instead of removing them.
	KeepImages bool
	// CRIULogLevel is the direct engine's CRIU log level (0 means 4:
	// every step timestamped, which docs/migration.md's profile reads).
	CRIULogLevel int32
	// Capacity is what this host offers its containers' requests
	// (capacity.go); a zero field means the machine's own (its CPUs, its
	// memory). Hosts that share a machine, as the testbed's do, are each
	// given their share.
	Capacity Amount
	// UsageInterval is how often the containers' CPU and memory use is
	// sampled (DefaultUsageInterval if zero).
	UsageInterval time.Duration
	// MigrationDSCP marks the connections between this agent and its
	// peers (package tclass): the image stream, handoff, commit, image
	// pushes, log history. -1 or 0 leaves them unmarked; `cflow agent
	// serve` defaults to tclass.DefaultDSCP (CS1).
	MigrationDSCP int
	// LinkRate, when non-zero, is the uplink's rate in bits/s: New puts
	// the live and migration classes on Uplink (tclass.Install), marked
	// traffic going to migration. Zero removes what an earlier run with
	// a rate installed (link.go).
	LinkRate uint64
	Log      *slog.Logger
}

// ContainerSpec is what a client asks to run.
type ContainerSpec struct {
	Name string     `json:"name"`
	IP   netip.Addr `json:"ip"`
	MAC  MAC        `json:"mac,omitempty"`
	Args []string   `json:"args"`
	Env  []string   `json:"env,omitempty"`
	Cwd  string     `json:"cwd,omitempty"`
	// Image is what the client named (a ref or digest); ImageDigest the
	// image the container runs from, resolved once (docs/images.md).
	Image       string `json:"image,omitempty"`
	ImageDigest string `json:"image_digest,omitempty"`
	// Options users expect of a container runtime; see docs/containers.md.
	User      runtime.User      `json:"user"`
	Rlimits   []runtime.Rlimit  `json:"rlimits,omitempty"`
	Volumes   []runtime.Volume  `json:"volumes,omitempty"`
	Resources runtime.Resources `json:"resources"`
	// LogMaxBytes and LogFiles bound the container's log on each host (see
	// docs/logs.md); zero means the defaults, 10 MiB and 3 files.
	LogMaxBytes int64 `json:"log_max_bytes,omitempty"`
	LogFiles    int   `json:"log_files,omitempty"`

	Lifecycle // --rm, --restart (lifecycle.go)
}

// MAC is an Ethernet address that reads and writes as xx:xx:xx:xx:xx:xx.
type MAC net.HardwareAddr

func (m MAC) String() string { return net.HardwareAddr(m).String() }

// MarshalText writes the colon form.
func (m MAC) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText parses the colon form.
func (m *MAC) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*m = nil
		return nil
	}
	hw, err := net.ParseMAC(string(b))
	if err != nil {
		return err
	}
	*m = MAC(hw)
	return nil
}

// Container states. Transitions: running -> migrating -> (gone | running);
// incoming (destination side) -> running | gone.
const (
	StateRunning   = "running"
	StateMigrating = "migrating"
	StateIncoming  = "incoming"
	StateStopped   = "stopped"
)

// ContainerInfo is a container as the API shows it.
type ContainerInfo struct {
	ContainerSpec
	Host    string    `json:"host"`
	State   string    `json:"state"`
	Pid     int       `json:"pid,omitempty"`
	Netns   string    `json:"netns"`
	Started time.Time `json:"started"`
	// PagesPending says a post-copy migration is still bringing the
	// container's memory from its previous host, on which it depends
	// until then.
	PagesPending bool `json:"pages_pending,omitempty"`
	// Requests are what the container holds of its host's capacity: its
	// resources (which are also its cgroup limits), 0 where it sets none.
	Requests Amount `json:"requests"`
	// Usage is what it used at the agent's last sample: CPUs averaged
	// over the sampling interval, memory as its working set. Absent until
	// two samples of it were taken, and while it does not run.
	Usage *Amount `json:"usage,omitempty"`

	RunStatus // exit code, restarts (lifecycle.go)
}

type entry struct {
	info     ContainerInfo
	incoming *incoming         // destination-side migration state
	pages    *runtime.PostCopy // post-copy: the memory still coming from the previous host
	out      *localSource      // source side of the migration under way
	from     string            // the host it last arrived from (its settle comes from there)
	counted  bool              // its incoming migration's end is counted (metrics.go)
}

// Agent is one host's daemon.
type Agent struct {
	cfg Config
	rt  *runtime.Runtime
	log *slog.Logger

	mu         sync.Mutex
	containers map[string]*entry
	admitMu    sync.Mutex // registry.go

	faults faults // test-only fault injection
	images imageStore

	inLogs map[string]*logInherit // incoming containers' log history being fetched (logs.go)

	movingTo map[string]string // container -> the destination it is leaving (or left) for
	peersMu  sync.Mutex
	peers    map[string]*Client // one per peer and transport, so connections are reused
	// pageTLS is cfg.TLS written out for CRIU, whose post-copy page
	// server speaks TLS itself (nil without an identity).
	pageTLS *pki.Files

	usage   *usageSampler // usage.go
	metrics *agentMetrics // metrics.go
}

// New creates an agent and re-adopts containers a previous run left
// running (runc keeps their state; the agent keeps their specs).
func New(cfg Config) (*Agent, error) {
	if cfg.Name == "" || cfg.StateDir == "" || cfg.Uplink == "" || cfg.NetnsPrefix == "" {
		return nil, fmt.Errorf("%w: agent needs a name, a state dir, an uplink and a netns prefix", ErrBadRequest)
	}
	if cfg.PrefixLen == 0 {
		cfg.PrefixLen = 24
	}
	if cfg.CRIUTimeout == 0 {
		cfg.CRIUTimeout = 20 * time.Second
	}
	if cfg.ImagesDir == "" {
		cfg.ImagesDir = filepath.Join("/dev/shm/containerflow", strings.TrimSuffix(cfg.NetnsPrefix, "-"))
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.UsageInterval <= 0 {
		cfg.UsageInterval = DefaultUsageInterval
	}
	var err error
	if cfg.Capacity, err = resolveCapacity(cfg.Capacity); err != nil {
		return nil, err
	}
	var cb criu.Binary
	if cfg.CRIU == "" {
		cb, _, err = criu.Find(context.Background())
	} else {
		cb, err = criu.At(context.Background(), cfg.CRIU)
	}
	if err != nil {
		return nil, err
	}
	cfg.CRIU = cb.Path
	if err := setupLink(cfg); err != nil {
		return nil, err
	}
	// Saves CRIU's kernel probing (~20 ms) on each of the four CRIU starts
	// of a migration; without it the agent still works, only slower.
	if how, err := criu.EnsureKernelCache(context.Background(), cb); err != nil {
		cfg.Log.Warn("no CRIU kernel cache", "err", err)
	} else {
		cfg.Log.Debug("CRIU kernel cache", "state", how)
	}
	// The runtime ID names the containers' cgroups, which must not clash
	// between two agents on one machine.
	rt, err := runtime.New(strings.TrimSuffix(cfg.NetnsPrefix, "-"), filepath.Join(cfg.StateDir, "runtime"), cb)
	if err != nil {
		return nil, err
	}
	// Root-only: checkpoint images hold containers' memory, specs their
	// environment; an existing directory is tightened, not trusted.
	for _, d := range []string{cfg.StateDir, cfg.ImagesDir, filepath.Join(cfg.StateDir, "specs")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, err
		}
	}
	a := &Agent{cfg: cfg, rt: rt, log: cfg.Log.With("agent", cfg.Name), containers: map[string]*entry{}, usage: &usageSampler{}}
	if cfg.TLS != nil {
		f, err := cfg.TLS.WriteFiles(filepath.Join(cfg.StateDir, "criu-tls"))
		if err != nil {
			return nil, fmt.Errorf("write the identity for CRIU: %w", err)
		}
		a.pageTLS = &f
	}
	a.metrics = newAgentMetrics(a)
	rt.SetExitHandler(a.containerExited)
	a.adopt()
	a.adoptLifecycle()
	a.recoverLeaving() // recover.go
	a.startSampling(cfg.UsageInterval)
	return a, nil
}

// adopt re-registers running containers and removes what an interrupted
// incoming migration left: namespaces and runc state with no running
// container behind them.
func (a *Agent) adopt() {
	cs, err := a.rt.List(context.Background())
	if err != nil {
		return
	}
	defer a.removeStale(cs)
	for _, c := range cs {
		var spec ContainerSpec
		b, err := os.ReadFile(a.specPath(c.Name))
		if err != nil || json.Unmarshal(b, &spec) != nil {
			if rec, ok := a.loadIncoming(c.Name); ok {
				a.adoptIncoming(c, rec)
			}
			continue
		}
		a.containers[c.Name] = &entry{info: ContainerInfo{ContainerSpec: spec, Host: a.cfg.Name, State: StateRunning, Pid: c.Pid, Netns: a.netns(c.Name)}}
	}
}

func (a *Agent) removeStale(cs []runtime.Container) {
	for _, c := range cs {
		if _, ok := a.containers[c.Name]; !ok {
			// Locked first, as Remove does: a copy of a migration that
			// ended elsewhere must not close its clients' connections,
			// which live on in the other copy.
			_ = cnet.Lock(a.netns(c.Name))
			_ = a.rt.Delete(context.Background(), c.Name)
		}
	}
	// Bundles with no container: incoming migrations staged by a previous
	// run (their root may still be bind-mounted for CRIU).
	for _, name := range a.rt.Bundles() {
		if _, ok := a.containers[name]; !ok {
			a.log.Info("removing stale bundle", "name", name)
			_ = a.rt.Delete(context.Background(), name)
		}
	}
	// A fresh agent has no migration in flight: whatever is in its images
	// dir belonged to one that a crash of the previous run interrupted
	// (found by cflow bench soak: a few MB of tmpfs per agent crash).
	ents, _ := os.ReadDir(a.cfg.ImagesDir)
	for _, en := range ents {
		dir := filepath.Join(a.cfg.ImagesDir, en.Name())
		// A restore whose CRIU died with the previous run (CRIU dies of
		// SIGPIPE when its agent does) left its mount directory in /tmp.
		if yard, err := criu.RemoveMountYard(filepath.Join(dir, "work", "restore.log")); err != nil {
			a.log.Warn("CRIU's mount directory of an interrupted restore not removed", "dir", en.Name(), "err", err)
		} else if yard != "" {
			a.log.Info("removed the mount directory of an interrupted restore", "dir", yard)
		}
		if !a.cfg.KeepImages {
			a.log.Info("removing stale checkpoint images", "dir", en.Name())
			_ = mounts.RemoveAll(dir)
		}
	}
	names, _ := nsrun.List(a.cfg.NetnsPrefix)
	for _, ns := range names {
		if _, ok := a.containers[strings.TrimPrefix(ns, a.cfg.NetnsPrefix)]; !ok {
			a.log.Info("removing stale container namespace", "netns", ns)
			_ = cnet.Lock(ns)
			_ = cnet.Delete(ns)
		}
	}
}

func (a *Agent) specPath(name string) string {
	return filepath.Join(a.cfg.StateDir, "specs", name+".json")
}

func (a *Agent) netns(name string) string { return a.cfg.NetnsPrefix + name }

func (a *Agent) runtimeSpec(s ContainerSpec) runtime.Spec {
	return a.runtimeSpecWith(s, "")
}

func (a *Agent) runtimeSpecWith(s ContainerSpec, actionScript string) runtime.Spec {
	rs := runtime.Spec{Name: s.Name, Args: s.Args, Env: s.Env, Cwd: s.Cwd, Netns: "/run/netns/" + a.netns(s.Name), ActionScript: actionScript,
		User: s.User, Rlimits: s.Rlimits, Volumes: s.Volumes, Resources: s.Resources, RootfsLower: a.imageRoot(s),
		Log: s.logConfig()}
	if a.cfg.BinDir != "" {
		rs.Binds = []runtime.Bind{{Source: a.cfg.BinDir, Target: "/opt/cflow/bin"}}
	}
	return rs
}

// validate checks a spec before anything is made for it, on the host that
// runs it and on a migration's destination before the freeze: so a volume
// missing or a limit too high there fails the migration early.
func (a *Agent) validate(s *ContainerSpec) error {
	if s.ImageDigest != "" && a.imageRoot(*s) == "" {
		return fmt.Errorf("%w: image %s is not on %s", ErrBadRequest, s.ImageDigest, a.cfg.Name)
	}
	rs := a.runtimeSpec(*s)
	if err := rs.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if err := rs.CheckHostPaths(); err != nil {
		return fmt.Errorf("%w: %v on %s", ErrBadRequest, err, a.cfg.Name)
	}
	if !s.IP.Is4() {
		return fmt.Errorf("%w: ip %q must be an IPv4 address", ErrBadRequest, s.IP)
	}
	if s.MAC == nil {
		b := s.IP.As4()
		s.MAC = MAC{0x02, 0x42, b[0], b[1], b[2], b[3]}
	}
	if len(s.MAC) != 6 || s.MAC[0]&1 == 1 {
		return fmt.Errorf("%w: mac %s must be a unicast Ethernet address", ErrBadRequest, s.MAC)
	}
	return nil
}

// reserve claims a name in the registry, or says why it cannot.
func (a *Agent) reserve(s ContainerSpec, state string) (*entry, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if e, ok := a.containers[s.Name]; ok {
		return nil, fmt.Errorf("%w: container %s already exists on %s (%s)", ErrConflict, s.Name, a.cfg.Name, e.info.State)
	}
	for _, e := range a.containers {
		if e.info.IP == s.IP {
			return nil, fmt.Errorf("%w: address %s is used by container %s", ErrConflict, s.IP, e.info.Name)
		}
	}
	// Checked under the same lock as the name, so two admissions cannot
	// both take the last of the room.
	if err := a.fitsLocked(s); err != nil {
		a.metrics.refused(state)
		return nil, err
	}
	e := &entry{info: ContainerInfo{ContainerSpec: s, Host: a.cfg.Name, State: state, Netns: a.netns(s.Name)}}
	a.containers[s.Name] = e
	return e, nil
}

func (a *Agent) release(name string) {
	a.mu.Lock()
	delete(a.containers, name)
	a.mu.Unlock()
	_ = os.Remove(a.specPath(name))
	_ = os.Remove(a.incomingPath(name))
}

func (a *Agent) createNetns(s ContainerSpec) error {
	return cnet.Create(cnet.Config{
		Netns: a.netns(s.Name), HostNetns: a.cfg.HostNetns, Uplink: a.cfg.Uplink,
		Addr: netip.PrefixFrom(s.IP, a.cfg.PrefixLen), MAC: net.HardwareAddr(s.MAC),
	})
}

// Run starts a container: namespace, bundle, runc. It does not steer the
// switch; whoever places the container decides that.
func (a *Agent) Run(ctx context.Context, s ContainerSpec) (ContainerInfo, error) {
	if err := a.resolveImage(&s); err != nil {
		return ContainerInfo{}, err
	}
	e, unreserve, err := a.admit(ctx, &s) // name and address, fleet-wide (registry.go)
	if err != nil {
		return ContainerInfo{}, err
	}
	fail := func(err error) (ContainerInfo, error) {
		_ = a.rt.Delete(context.Background(), s.Name)
		_ = cnet.Delete(a.netns(s.Name))
		a.release(s.Name)
		unreserve()
		return ContainerInfo{}, err
	}
	if err := a.createNetns(s); err != nil {
		return fail(fmt.Errorf("network for %s: %w", s.Name, err))
	}
	pid, err := a.rt.Run(ctx, a.runtimeSpec(s))
	if err != nil {
		return fail(err)
	}
	if err := a.saveSpec(s); err != nil {
		return fail(err)
	}
	// Placing a container on a host means its address routes there.
	if a.cfg.Steerer != nil {
		if err := a.cfg.Steerer.Steer(ctx, s.IP, net.HardwareAddr(s.MAC), a.cfg.Name); err != nil {
			return fail(fmt.Errorf("steer %s to %s: %w", s.IP, a.cfg.Name, err))
		}
	}
	a.mu.Lock()
	e.info.Pid, e.info.Started = pid, time.Now().UTC()
	info := e.info
	a.mu.Unlock()
	a.noticeExit(s.Name)
	if now, err := a.Get(s.Name); err == nil {
		info = now
	}
	a.log.Info("container started", "name", s.Name, "ip", s.IP, "pid", pid)
	return info, nil
}

func (a *Agent) saveSpec(s ContainerSpec) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return os.WriteFile(a.specPath(s.Name), b, 0o600)
}

// Remove stops and deletes a container. The namespace is locked first, so
// the dying processes' sockets cannot send FIN or RST to anyone.
func (a *Agent) Remove(ctx context.Context, name string) error {
	a.mu.Lock()
	e, ok := a.containers[name]
	if ok && e.info.State == StateMigrating {
		a.mu.Unlock()
		return fmt.Errorf("%w: container %s is migrating", ErrConflict, name)
	}
	a.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: container %s on %s", ErrNotFound, name, a.cfg.Name)
	}
	err := a.discard(ctx, name)
	a.rt.DropLog(name)
	return errors.Join(err, a.forget(ctx, name))
}

func (a *Agent) discard(ctx context.Context, name string) error {
	ns := a.netns(name)
	_ = cnet.Lock(ns)
	err := a.rt.Delete(ctx, name)
	if derr := cnet.Delete(ns); err == nil {
		err = derr
	}
	a.release(name)
	return err
}

// Get returns one container, with its requests and its last measured use.
func (a *Agent) Get(name string) (ContainerInfo, error) {
	a.mu.Lock()
	e, ok := a.containers[name]
	var info ContainerInfo
	if ok {
		info = e.info
	}
	a.mu.Unlock()
	if !ok {
		return ContainerInfo{}, fmt.Errorf("%w: container %s on %s", ErrNotFound, name, a.cfg.Name)
	}
	return a.withUsage(info), nil
}

// List returns every container, sorted by name, with its requests and its
// last measured use.
func (a *Agent) List() []ContainerInfo {
	a.mu.Lock()
	out := make([]ContainerInfo, 0, len(a.containers))
	for _, e := range a.containers {
		out = append(out, e.info)
	}
	a.mu.Unlock()
	for i := range out {
		out[i] = a.withUsage(out[i])
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Signal sends a signal to a container's init.
func (a *Agent) Signal(ctx context.Context, name string, sig syscall.Signal) error {
	if _, err := a.Get(name); err != nil {
		return err
	}
	return a.rt.Signal(ctx, name, sig)
}

// Close stops the agent's background sampling; containers keep running,
// and a new agent adopts them.
func (a *Agent) Close() error {
	a.usage.close()
	a.rt.Close()
	return nil
}

// RemoveAll deletes every container (used when the agent owns the host's
// whole life, as in tests and the testbed's teardown).
func (a *Agent) RemoveAll(ctx context.Context) {
	for _, c := range a.List() {
		_ = a.discard(ctx, c.Name)
	}
}
