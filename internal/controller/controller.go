package controller

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/containerflow/containerflow/internal/dataplane"
)

// Options configure New.
type Options struct {
	// Config holds the ports and the initial entries.
	Config *Config
	// PinPath is the bpffs directory the data plane is pinned in (e.g.
	// /sys/fs/bpf/containerflow/NAME). Empty: nothing outlives Close.
	PinPath string
	// Netns is the namespace holding the ports (/run/netns/NAME); empty:
	// the caller's.
	Netns string
	// Attach selects TCX, tc or automatic choice for port attachment.
	Attach dataplane.AttachMode
	// StatePath is the bbolt file of the desired state (required).
	StatePath string
	// Fsync makes every commit wait for the disk (see openStore).
	Fsync bool
	// Token is the bearer token writes need; NoAuth disables the check and
	// must be set explicitly when Token is empty.
	Token  string
	NoAuth bool
	// Operators are the TLS identities that may do every write (default:
	// cli); others are agents, limited to their own host (identity.go).
	Operators []string
	// Logger receives the controller's and the data plane's events.
	Logger *slog.Logger
}

// Controller owns the data plane, its desired state and the API.
type Controller struct {
	log     *slog.Logger
	dp      *dataplane.Dataplane
	cfg     *Config
	ports   *portTable
	initial *State
	store   *store
	token   string
	noAuth  bool
	// operators: see Options.Operators.
	operators []string
	started   time.Time
	metrics   *apiMetrics
	names     *registry // container names and addresses (registry.go); its own lock

	mu       sync.Mutex // serialises writes; guards state and problems
	state    *State
	problems []string

	routesMu sync.Mutex
	routes   []Route // mounted by other packages (routes.go)
}

// New loads (or takes over) the data plane, attaches the configured ports,
// and re-applies the stored desired state — or, on a first start, the
// configuration's initial entries.
func New(opts Options) (*Controller, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Token == "" && !opts.NoAuth {
		return nil, errors.New("controller: no token: give one or disable auth explicitly")
	}
	if opts.StatePath == "" {
		return nil, errors.New("controller: no state path")
	}
	cfg := opts.Config
	if cfg == nil {
		cfg = &Config{}
	}
	if err := validatePorts(cfg.Ports); err != nil {
		return nil, fmt.Errorf("controller config: %w", err)
	}
	pt := newPortTable(cfg.Ports)
	initial, err := cfg.initialState(pt)
	if err != nil {
		return nil, fmt.Errorf("controller config: %w", err)
	}

	c := &Controller{log: log, cfg: cfg, ports: pt, initial: initial, token: opts.Token,
		noAuth: opts.NoAuth, operators: opts.Operators, started: time.Now(), metrics: newAPIMetrics()}
	if c.store, err = openStore(opts.StatePath, opts.Fsync, log); err != nil {
		return nil, err
	}
	c.dp, err = dataplane.Load(dataplane.Options{PinPath: opts.PinPath, Netns: opts.Netns, Attach: opts.Attach, Logger: log})
	if err != nil {
		_ = c.store.close()
		return nil, fmt.Errorf("load data plane: %w", err)
	}
	if err := c.start(); err != nil {
		_ = c.dp.Close()
		_ = c.store.close()
		return nil, err
	}
	return c, nil
}

// start attaches the ports and reconciles the tables with the desired
// state.
func (c *Controller) start() error {
	if err := c.attachPorts(); err != nil {
		return err
	}
	st, initialized, err := c.store.load()
	if err != nil {
		return err
	}
	if !initialized {
		st = c.initial.clone()
		if err := c.store.replace(st); err != nil {
			return err
		}
		c.log.Info("state initialised from configuration", "addresses", len(st.Addresses), "services", len(st.Services))
	}
	if c.names, err = c.openRegistry(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.state = st
	c.problems = c.reconcileLocked(st)
	return nil
}

// attachPorts makes the data plane's ports those of the configuration:
// configured ones attached (a no-op for a port adopted from the pins),
// others detached.
func (c *Controller) attachPorts() error {
	cur, err := c.dp.Ports()
	if err != nil {
		return fmt.Errorf("list ports: %w", err)
	}
	for _, p := range cur {
		want, ok := c.ports.byNum[p.Number]
		if ok && want.Interface == p.Name {
			continue
		}
		c.log.Info("detaching port not in the configuration", "port", p.Number, "ifname", p.Name)
		if err := c.dp.DetachPort(p.Number); err != nil {
			return fmt.Errorf("detach port %d: %w", p.Number, err)
		}
	}
	for _, p := range c.cfg.Ports {
		if err := c.dp.AttachPort(p.Number, p.Interface); err != nil {
			return fmt.Errorf("attach port %d (%s): %w", p.Number, p.Interface, err)
		}
	}
	return nil
}

// Close releases the controller. A pinned data plane keeps forwarding with
// its tables as they are, for the next controller to take over.
func (c *Controller) Close() error {
	return errors.Join(c.dp.Close(), c.store.close())
}

// Dataplane returns the data plane the controller drives (tests and the
// benchmark read it directly).
func (c *Controller) Dataplane() *dataplane.Dataplane { return c.dp }

// State returns a copy of the desired state.
func (c *Controller) State() *State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state.clone()
}
