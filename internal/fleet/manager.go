package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/containerflow/containerflow/internal/agent"
	"github.com/containerflow/containerflow/internal/controller"
)

// Agent is what the fleet asks of a host's agent (agent.Client).
type Agent interface {
	Host(ctx context.Context) (agent.HostStats, error)
	List(ctx context.Context) ([]agent.ContainerInfo, error)
	Migrate(ctx context.Context, name string, req agent.MigrateRequest) (*agent.MigrationResult, error)
	Run(ctx context.Context, s agent.ContainerSpec) (agent.ContainerInfo, error)
}

// Options configure New.
type Options struct {
	StatePath string             // bbolt file of hosts and operations (required)
	Dial      func(h Host) Agent // a client of a host's agent
	Log       *slog.Logger
}

// Concurrency bounds of compound operations.
const (
	DefaultConcurrency = 2
	MaxConcurrency     = 16
)

// askTimeout bounds a question to one agent (its stats, its containers):
// a host that does not answer is left out of a plan, not waited for.
const askTimeout = 5 * time.Second

// Manager keeps the hosts and runs the operations.
type Manager struct {
	log  *slog.Logger
	st   *store
	dial func(Host) Agent

	ctx  context.Context // ends at Close: running operations are cancelled
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu      sync.Mutex
	hosts   map[string]*Host
	ops     map[string]*Operation
	cancels map[string]context.CancelFunc // of running operations
	clients map[string]Agent              // by host name and URL
}

// New opens the state and ends what a previous run left unfinished.
func New(o Options) (*Manager, error) {
	if o.StatePath == "" || o.Dial == nil {
		return nil, errors.New("fleet: a state path and a dialer are needed")
	}
	st, err := openStore(o.StatePath)
	if err != nil {
		return nil, err
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{log: log, st: st, dial: o.Dial, hosts: map[string]*Host{}, ops: map[string]*Operation{},
		cancels: map[string]context.CancelFunc{}, clients: map[string]Agent{}}
	m.ctx, m.stop = context.WithCancel(context.Background())
	if err := each(st, hostsBucket, func(h *Host) { m.hosts[h.Name] = h }); err != nil {
		st.close()
		return nil, err
	}
	var interrupted []*Operation
	err = each(st, opsBucket, func(op *Operation) {
		m.ops[op.ID] = op
		if !op.Finished() {
			interrupted = append(interrupted, op)
		}
	})
	if err != nil {
		st.close()
		return nil, err
	}
	for _, op := range interrupted {
		m.wg.Add(1)
		go m.endInterrupted(op)
	}
	return m, nil
}

// Close cancels the running operations, waits for them (their agents
// finish or roll back each migration under way) and closes the state.
func (m *Manager) Close() error {
	m.stop()
	m.wg.Wait()
	return m.st.close()
}

// Register records (or refreshes) a host and its agent's address; an
// unschedulable host stays so.
func (m *Manager) Register(name, url string) (Host, error) {
	if name == "" || url == "" {
		return Host{}, fmt.Errorf("%w: a host needs a name and an agent URL", controller.ErrInvalid)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now().UTC()
	h, ok := m.hosts[name]
	if !ok {
		h = &Host{Name: name, Registered: now}
		m.log.Info("host registered", "host", name, "url", url)
	}
	h.URL, h.Seen = url, now
	if err := m.st.put(hostsBucket, name, h); err != nil {
		return Host{}, err
	}
	m.hosts[name] = h
	return *h, nil
}

// SetSchedulable cordons (false) or resumes (true) a host.
func (m *Manager) SetSchedulable(name string, on bool) (Host, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h, ok := m.hosts[name]
	if !ok {
		return Host{}, m.unknownHost(name)
	}
	h.Unschedulable = !on
	if err := m.st.put(hostsBucket, name, h); err != nil {
		return Host{}, err
	}
	return *h, nil
}

// unknownHost: with m.mu held.
func (m *Manager) unknownHost(name string) error {
	names := make([]string, 0, len(m.hosts))
	for n := range m.hosts {
		names = append(names, n)
	}
	sort.Strings(names)
	return fmt.Errorf("%w: no host %q (registered: %v)", controller.ErrNotFound, name, names)
}

// client returns a client of host's agent.
func (m *Manager) client(host string) (Agent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h, ok := m.hosts[host]
	if !ok {
		return nil, m.unknownHost(host)
	}
	key := h.Name + " " + h.URL
	c, ok := m.clients[key]
	if !ok {
		c = m.dial(*h)
		m.clients[key] = c
	}
	return c, nil
}

// Hosts reports every host with what its agent says now (asked in
// parallel; an agent that does not answer is reported unreachable).
func (m *Manager) Hosts(ctx context.Context) []HostStatus {
	m.mu.Lock()
	hosts := make([]Host, 0, len(m.hosts))
	for _, h := range m.hosts {
		hosts = append(hosts, *h)
	}
	m.mu.Unlock()
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].Name < hosts[j].Name })
	out := make([]HostStatus, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = m.ask(ctx, h)
		}()
	}
	wg.Wait()
	return out
}

func (m *Manager) ask(ctx context.Context, h Host) HostStatus {
	hs := HostStatus{Host: h}
	c, err := m.client(h.Name)
	if err == nil {
		ctx, cancel := context.WithTimeout(ctx, askTimeout)
		defer cancel()
		var st agent.HostStats
		if st, err = c.Host(ctx); err == nil {
			hs.Stats = &st
			hs.Containers, err = c.List(ctx)
		}
	}
	if err != nil {
		hs.Error = err.Error()
		return hs
	}
	hs.Reachable = true
	return hs
}

// where finds the host a container runs on now ("" if none answers
// with it running).
func (m *Manager) where(ctx context.Context, name string) string {
	for _, hs := range m.Hosts(ctx) {
		for _, c := range hs.Containers {
			if c.Name == name && c.State == agent.StateRunning {
				return hs.Name
			}
		}
	}
	return ""
}
