package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	runc "github.com/containerd/go-runc"

	"github.com/containerflow/containerflow/internal/criu"
	"github.com/containerflow/containerflow/internal/mounts"
)

// ErrNotFound means the runtime has no such container.
var ErrNotFound = errors.New("container not found")

// ErrNotRunc means runc does not know the container: the direct engine
// restored it, and only the direct engine can checkpoint it.
var ErrNotRunc = errors.New("container was restored by the direct engine; runc cannot checkpoint it")

// Runtime manages the containers of one host. Two runtimes on one machine
// (the testbed's hosts) must have different IDs and directories.
type Runtime struct {
	id   string // unique on the machine; names cgroups
	dir  string
	runc *runc.Runc
	criu criu.Binary

	// bundleMu orders a bundle's removal against an exit record written
	// into it (exit.go).
	bundleMu sync.Mutex
	closed   bool // under bundleMu: Close was called (exit.go)

	mu     sync.Mutex
	logs   map[string]*logSink
	onExit func(name string, st ExitStatus) // exit.go
	stores map[string]*logStore
}

// New returns a runtime keeping its state under dir. The CRIU binary is
// passed to runc with --criu, so a private CRIU install needs no PATH
// change, and the direct engine starts it itself.
func New(id, dir string, cb criu.Binary) (*Runtime, error) {
	for _, d := range []string{"bundles", "runc", "logs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("runtime dir: %w", err)
		}
	}
	r := &runc.Runc{
		Root:      filepath.Join(dir, "runc"),
		Log:       filepath.Join(dir, "runc.log"),
		Debug:     os.Getenv("CFLOW_RUNC_DEBUG") != "",
		LogFormat: runc.JSON,
	}
	if cb.Path != "" {
		path := cb.Path
		if cb.Preload != "" {
			// runc runs CRIU itself: a wrapper gives it the preload too.
			path = filepath.Join(dir, "criu")
			script := fmt.Sprintf("#!/bin/sh\nLD_PRELOAD=%s exec %s \"$@\"\n", shellQuote(cb.Preload), shellQuote(cb.Path))
			if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
				return nil, fmt.Errorf("criu wrapper: %w", err)
			}
		}
		r.ExtraArgs = []string{"--criu", path}
	}
	// Detached inits are re-parented to us, so their exit status can be
	// had (exit.go).
	if err := BecomeSubreaper(); err != nil {
		return nil, fmt.Errorf("child subreaper: %w", err)
	}
	return &Runtime{id: id, dir: dir, runc: r, criu: cb, logs: map[string]*logSink{}, stores: map[string]*logStore{}}, nil
}

// BundleDir is where a container's bundle lives.
func (r *Runtime) BundleDir(name string) string { return filepath.Join(r.dir, "bundles", name) }

func (r *Runtime) cgroupsPath(name string) string { return "/containerflow/" + r.id + "/" + name }

// Run creates the bundle and starts the container detached.
func (r *Runtime) Run(ctx context.Context, s Spec) (int, error) {
	if err := s.Validate(); err != nil {
		return 0, err
	}
	if _, err := r.runc.State(ctx, s.Name); err == nil {
		return 0, fmt.Errorf("container %s already exists", s.Name)
	}
	if err := r.freshBundle(s); err != nil {
		return 0, err
	}
	// A new container's log starts empty, whatever an earlier one of that
	// name left.
	if err := r.freshLog(s.Name, s.Log); err != nil {
		return 0, err
	}
	if s.RootfsLower != "" {
		if err := r.mountImageRoot(s, r.rootfs(s.Name)); err != nil {
			return 0, err
		}
	}
	return r.launch(s.Name, func(pio runc.IO, pidFile string) error {
		_, err := r.runc.Run(ctx, s.Name, r.BundleDir(s.Name), &runc.CreateOpts{IO: pio, Detach: true, PidFile: pidFile})
		// Unlike Create and Restore, go-runc's Run keeps our copies of the
		// pipes' write ends open; without this the log copiers never see EOF.
		if c, ok := pio.(runc.StartCloser); ok {
			_ = c.CloseAfterStart()
		}
		if err != nil {
			return fmt.Errorf("runc run %s: %w%s", s.Name, err, r.runcLogTail())
		}
		return nil
	})
}

// freshBundle (re)writes the bundle of s from scratch.
func (r *Runtime) freshBundle(s Spec) error {
	bundle := r.BundleDir(s.Name)
	// Mount-aware: a restore interrupted before it finished can leave its
	// root bind-mounted inside the old bundle.
	_ = mounts.RemoveAll(bundle)
	if err := writeBundle(bundle, s, r.cgroupsPath(s.Name)); err != nil {
		return fmt.Errorf("bundle for %s: %w", s.Name, err)
	}
	return nil
}

// launch gives the container fresh log pipes, starts it with start (runc
// run or restore, writing pidFile) and returns its pid; on failure it
// closes the pipes and removes whatever runc left.
func (r *Runtime) launch(name string, start func(pio runc.IO, pidFile string) error) (int, error) {
	pio, err := r.attachLog(name)
	if err != nil {
		return 0, err
	}
	pidFile := filepath.Join(r.BundleDir(name), "init.pid")
	_ = os.Remove(pidFile)
	err = start(pio, pidFile)
	if w := pio.Stdin(); w != nil {
		w.Close()
	}
	if err != nil {
		r.detachLog(name)
		_ = r.runc.Delete(context.Background(), name, &runc.DeleteOpts{Force: true})
		return 0, err
	}
	pid, err := readPid(pidFile)
	if err == nil {
		r.Watch(name, pid)
	}
	return pid, err
}

// CheckpointOpts selects what a checkpoint includes.
type CheckpointOpts struct {
	ImagesDir string // receives the images (and nothing else)
	WorkDir   string // receives dump.log
}

// Checkpoint dumps the container with its established TCP connections and
// stops it. The network namespace stays locked by CRIU, so its kernel
// drops (never resets) the peers' packets until the namespace is removed.
func (r *Runtime) Checkpoint(ctx context.Context, name string, o CheckpointOpts) error {
	if _, ok := r.readDirect(name); ok {
		return fmt.Errorf("checkpoint %s: %w", name, ErrNotRunc)
	}
	err := r.runc.Checkpoint(ctx, name, &runc.CheckpointOpts{
		ImagePath:    o.ImagesDir,
		WorkDir:      o.WorkDir,
		AllowOpenTCP: true,
		FileLocks:    true,
	})
	if err != nil {
		return criu.Failed("checkpoint "+name, err, filepath.Join(o.WorkDir, "dump.log"))
	}
	r.detachLog(name)
	return nil
}

// Restore starts a container from checkpoint images with the spec's
// network namespace (same IP and MAC as at checkpoint time). A bundle
// written by PrepareBundle is used as it is.
func (r *Runtime) Restore(ctx context.Context, s Spec, o CheckpointOpts) (int, error) {
	if err := s.Validate(); err != nil {
		return 0, err
	}
	bundle := r.BundleDir(s.Name)
	if _, err := os.Stat(filepath.Join(bundle, "config.json")); err != nil {
		if err := r.freshBundle(s); err != nil {
			return 0, err
		}
	}
	// runc owns what it restores; a record left by an earlier direct
	// restore of this bundle would shadow it.
	r.removeDirect(s.Name)
	if err := r.setLogConfig(s.Name, s.Log); err != nil {
		return 0, err
	}
	if s.RootfsLower != "" {
		// Now that the writable layer has arrived: see imageroot.go.
		if err := r.mountImageRoot(s, r.rootfs(s.Name)); err != nil {
			return 0, err
		}
	}
	return r.launch(s.Name, func(pio runc.IO, pidFile string) error {
		_, err := r.runc.Restore(ctx, s.Name, bundle, &runc.RestoreOpts{
			CheckpointOpts: runc.CheckpointOpts{ImagePath: o.ImagesDir, WorkDir: o.WorkDir, AllowOpenTCP: true, FileLocks: true},
			IO:             pio,
			Detach:         true,
			PidFile:        pidFile,
		})
		if err != nil {
			return criu.Failed("restore "+s.Name, err, filepath.Join(o.WorkDir, "restore.log"))
		}
		return nil
	})
}

// PrepareBundle writes the bundle ahead of a restore, so that work is not
// on the migration's critical path.
func (r *Runtime) PrepareBundle(s Spec) error {
	if err := s.Validate(); err != nil {
		return err
	}
	return r.freshBundle(s)
}

// SetActionScript rewrites the bundle's CRIU configuration with another
// action script ("" for none), e.g. once an incoming container is live and
// its go-live hook must not run at its next checkpoint.
func (r *Runtime) SetActionScript(s Spec, script string) error {
	s.ActionScript = script
	if err := s.Validate(); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(r.BundleDir(s.Name), criuConfName), []byte(s.CRIUConfig()), 0o644)
}

// Delete kills the container and removes its runc state, cgroups and
// bundle. Deleting a missing container is not an error.
func (r *Runtime) Delete(ctx context.Context, name string) error {
	err := r.runc.Delete(ctx, name, &runc.DeleteOpts{Force: true})
	if err != nil && strings.Contains(err.Error(), "does not exist") {
		err = nil
	}
	// A directly restored container's tasks go with its cgroups below.
	r.removeDirect(name)
	// A restore killed half-way leaves state that runc does not know as a
	// container (and its criu-root bind mount); its processes die with the
	// namespace and the cgroup, so only the directory is left to remove.
	if rerr := mounts.RemoveAll(filepath.Join(r.runc.Root, name)); rerr != nil && err == nil {
		err = rerr
	}
	if cerr := r.removeCgroups(name); cerr != nil && err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	r.detachLog(name)
	r.bundleMu.Lock()
	defer r.bundleMu.Unlock()
	return mounts.RemoveAll(r.BundleDir(name))
}

// Bundles lists the containers this runtime has a bundle for, running
// or not (a staged incoming migration has a bundle and no process).
func (r *Runtime) Bundles() []string {
	ents, _ := os.ReadDir(filepath.Join(r.dir, "bundles"))
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// Container is a container as runc sees it.
type Container struct {
	Name   string `json:"name"`
	Pid    int    `json:"pid"`
	Status string `json:"status"`
}

// State returns one container.
func (r *Runtime) State(ctx context.Context, name string) (Container, error) {
	if d, ok := r.readDirect(name); ok {
		return Container{Name: name, Pid: d.Pid, Status: r.directStatus(name, d)}, nil
	}
	c, err := r.runc.State(ctx, name)
	if err != nil {
		if strings.Contains(err.Error(), "does not exist") || strings.Contains(err.Error(), "not exist") {
			return Container{}, fmt.Errorf("%w: %s", ErrNotFound, name)
		}
		return Container{}, fmt.Errorf("state of %s: %w", name, err)
	}
	return Container{Name: c.ID, Pid: c.Pid, Status: c.Status}, nil
}

// List returns every container of this runtime, runc's and the directly
// restored ones.
func (r *Runtime) List(ctx context.Context) ([]Container, error) {
	cs, err := r.runc.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Container, 0, len(cs))
	seen := map[string]bool{}
	for _, c := range cs {
		if _, ok := r.readDirect(c.ID); ok {
			continue // a stale runc record of a container that left and came back
		}
		seen[c.ID] = true
		out = append(out, Container{Name: c.ID, Pid: c.Pid, Status: c.Status})
	}
	ents, _ := os.ReadDir(filepath.Join(r.dir, "bundles"))
	for _, e := range ents {
		if d, ok := r.readDirect(e.Name()); ok && !seen[e.Name()] {
			out = append(out, Container{Name: e.Name(), Pid: d.Pid, Status: r.directStatus(e.Name(), d)})
		}
	}
	return out, nil
}

// Signal sends sig to the container's init process.
func (r *Runtime) Signal(ctx context.Context, name string, sig syscall.Signal) error {
	if d, ok := r.readDirect(name); ok {
		if r.directStatus(name, d) == "stopped" {
			return fmt.Errorf("signal %s: container is stopped", name)
		}
		return syscall.Kill(d.Pid, sig)
	}
	return r.runc.Kill(ctx, name, int(sig), nil)
}

// Pids lists the container's processes.
func (r *Runtime) Pids(ctx context.Context, name string) ([]int, error) {
	if _, ok := r.readDirect(name); ok {
		return r.cgroupPids(name)
	}
	return r.runc.Ps(ctx, name)
}

func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

func (r *Runtime) runcLogTail() string {
	b, err := os.ReadFile(r.runc.Log)
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return " (runc log: " + lines[len(lines)-1] + ")"
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
