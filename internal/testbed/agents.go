package testbed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerflow/containerflow/internal/cgroupfs"
	"github.com/containerflow/containerflow/internal/mounts"
	"github.com/containerflow/containerflow/internal/nsrun"
)

// AgentPort is where host agents listen on the management network (mutual
// TLS when the testbed starts them).
const AgentPort = 7070

// AgentPlainPort is the agents' plain-HTTP listener of an insecure testbed.
const AgentPlainPort = 7071

// agentURL is a planned host's agent at scheme://ADDR:port, ADDR its
// address on the data network if data, else on the management one.
func agentURL(host, scheme string, data bool, port int) string {
	s, _ := PlannedSpec(host)
	ip := s.MgmtIP
	if data {
		ip = s.DataIP
	}
	return fmt.Sprintf("%s://%s:%d", scheme, ip, port)
}

// AgentURL is a host agent's address on the management network, plain
// HTTP (agents run without certificates, as the agent package's tests do).
func AgentURL(host string) string {
	return agentURL(host, "http", false, AgentPort)
}

// AgentTLSURL is the mutual-TLS address of a host agent the testbed started.
func AgentTLSURL(host string) string {
	return agentURL(host, "https", false, AgentPort)
}

// AgentPlainURL is the plain listener of an insecure testbed's agent.
func AgentPlainURL(host string) string {
	return agentURL(host, "http", false, AgentPlainPort)
}

// HostDir is a host's state directory (agent socket, log, containers).
func (tb *Testbed) HostDir(host string) string { return filepath.Join(tb.Dir(), host) }

// AgentSocket is the agent's unix socket, reachable from outside the
// testbed's namespaces (the CLI uses it).
func (tb *Testbed) AgentSocket(host string) string {
	return filepath.Join(tb.HostDir(host), "agent.sock")
}

// TokenFile holds the bearer token of the testbed's agents.
func (tb *Testbed) TokenFile() string { return filepath.Join(tb.Dir(), "token") }

// Token reads the agents' bearer token; "" for a testbed started without
// auth.
func (tb *Testbed) Token() (string, error) {
	if tb.NoAuth {
		return "", nil
	}
	b, err := os.ReadFile(tb.TokenFile())
	if err != nil {
		return "", fmt.Errorf("testbed %s token: %w", tb.Prefix, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// ContainerNetnsPrefix is what an agent on host prefixes its containers'
// namespaces with, so Down finds them.
func (tb *Testbed) ContainerNetnsPrefix(host string) string { return tb.Prefix + "-" + host + "-" }

// StartAgents runs `BIN agent serve` in each host's namespace, steering
// through this testbed's switch — through its controller's API when one
// runs (StartController), else directly — and waits until each answers.
func (tb *Testbed) StartAgents(bin string) error {
	if err := tb.ensureToken(); err != nil {
		return err
	}
	if tb.TLS {
		if err := tb.ensurePKI(); err != nil {
			return err
		}
	}
	steer := tb.steerArg()
	for _, h := range tb.Hosts() {
		if err := tb.startAgent(bin, h, steer); err != nil {
			return err
		}
	}
	// Started all before waiting for any: they come up in parallel.
	for _, h := range tb.Hosts() {
		if err := waitSocket(tb.AgentSocket(h), 15*time.Second); err != nil {
			return fmt.Errorf("agent on %s did not come up (see %s): %w", h, filepath.Join(tb.HostDir(h), "agent.log"), err)
		}
	}
	return nil
}

// steerArg is how agents reach the switch: its controller when it runs.
func (tb *Testbed) steerArg() string {
	steer := "bridge:" + tb.Prefix
	if tb.Switch == SwitchEBPF && tb.controllerRunning() {
		steer = tb.ControllerAPIURL()
		if !tb.NoAuth {
			steer += "?token_file=" + tb.TokenFile()
		}
	}
	return steer
}

// startAgent starts host h's agent without waiting for it.
func (tb *Testbed) startAgent(bin, h, steer string) error {
	dir := tb.HostDir(h)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	args := []string{"agent", "serve", "--name", h, "--socket", tb.AgentSocket(h),
		"--state-dir", dir, "--uplink", UplinkIf, "--netns-prefix", tb.ContainerNetnsPrefix(h),
		"--switch", steer}
	args = append(args, tb.authArgs()...)
	args = append(args, tb.privateFSArgs(h, steer)...)
	if c := tb.HostCapacity; c.CPUs > 0 {
		args = append(args, "--capacity-cpus", strconv.FormatFloat(c.CPUs, 'f', -1, 64))
	}
	if c := tb.HostCapacity; c.Memory != "" {
		args = append(args, "--capacity-memory", c.Memory)
	}
	args = append(args, tb.listenArgs(h)...)
	args = append(args, tb.peerArgs(h)...)
	args = append(args, tb.linkRateArgs()...)
	logf, err := os.OpenFile(filepath.Join(dir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	ns, _ := tb.Netns(h)
	err = nsrun.Start(ns, cmd)
	logf.Close()
	if err != nil {
		return fmt.Errorf("start agent on %s: %w", h, err)
	}
	go cmd.Wait() //nolint:errcheck // reap it if we outlive it
	return nil
}

func waitSocket(path string, timeout time.Duration) error {
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}, Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := hc.Get("http://agent/v1/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// authArgs are the controller's and the agents' auth flags: the testbed's
// token file, or --no-auth (for the seed's scripts, which send no token).
func (tb *Testbed) authArgs() []string {
	if tb.NoAuth {
		return []string{"--no-auth"}
	}
	return []string{"--token-file", tb.TokenFile()}
}

// ensureToken creates the testbed's bearer token (shared by the agents and
// the switch controller) unless it exists or the testbed runs without auth.
func (tb *Testbed) ensureToken() error {
	if tb.NoAuth {
		return nil
	}
	if _, err := os.Stat(tb.TokenFile()); err == nil {
		return nil
	}
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return err
	}
	if err := os.WriteFile(tb.TokenFile(), []byte(hex.EncodeToString(tok)+"\n"), 0o600); err != nil {
		return fmt.Errorf("write token: %w", err)
	}
	return nil
}

// removeHostLeftovers deletes what containers leave outside namespaces:
// cgroups under every hierarchy and checkpoint images in /dev/shm. Called
// by Down after every process is dead.
func removeHostLeftovers(prefix string) error {
	var errs []error
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/containerflow/" + prefix + "-*")
	more, _ := filepath.Glob("/sys/fs/cgroup/containerflow/" + prefix + "-*")
	for _, r := range append(roots, more...) {
		if err := cgroupfs.RemoveTree(r); err != nil {
			errs = append(errs, err)
		}
	}
	shm, _ := filepath.Glob("/dev/shm/containerflow/" + prefix + "-*")
	for _, d := range shm {
		if err := mounts.RemoveAll(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
