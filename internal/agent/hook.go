package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerflow/containerflow/internal/cnet"
	"github.com/containerflow/containerflow/internal/migration/handoff"
	"github.com/containerflow/containerflow/internal/nsrun"
)

// The go-live hook. A restored container must not talk before the switch
// points at it (its output could not be taken back if the migration were
// rolled back), but every packet it sends while its namespace is locked is
// dropped and waits for a retransmission timer that, on a freshly restored
// socket, starts at one second. So the destination takes the address at the
// only moment when neither problem exists: CRIU runs its action scripts at
// "pre-resume" after it has rebuilt everything (and lifted its own lock) and
// before the first instruction of the container runs. The script calls back
// into this agent, which points the switch here and only then unlocks the
// namespace. If that fails, CRIU logs the script's failure and resumes the
// container anyway (it does not abort on pre-resume scripts), but still
// locked and without the address: the source then falls back to steering
// itself, and if that fails too it rolls back, discarding the silent
// destination.

// hookEnabled says whether this agent can take the address itself.
func (a *Agent) hookEnabled() bool {
	return len(a.cfg.HookCommand) > 0 && a.cfg.HookSocket != "" && a.cfg.Steerer != nil
}

// writeHookScript writes the action script CRIU runs for this restore. It
// carries a one-time nonce, the hook's only credential.
func (a *Agent) writeHookScript(dir, name string) (script, nonce string, err error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	nonce = hex.EncodeToString(b)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	var argv []string
	for _, s := range append(append([]string{}, a.cfg.HookCommand...), "--socket", a.cfg.HookSocket, "--name", name, "--nonce", nonce) {
		argv = append(argv, shellQuote(s))
	}
	body := "#!/bin/sh\n# containerflow go-live hook: CRIU runs it at every restore step; only pre-resume matters.\n" +
		"[ \"$CRTOOLS_SCRIPT_ACTION\" = pre-resume ] || exit 0\n" +
		"exec " + strings.Join(argv, " ") + "\n"
	script = filepath.Join(dir, "golive.sh")
	return script, nonce, os.WriteFile(script, []byte(body), 0o700)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// hookRequest is the body of POST /v1/migrations/{name}/hook.
type hookRequest struct {
	Nonce string `json:"nonce"`
}

// goLive is the runc engine's hook calling back: it proves it is the
// hook of this migration, then takes the address.
func (a *Agent) goLive(ctx context.Context, name, nonce string) error {
	e, err := a.incomingEntry(name)
	if err != nil {
		return err
	}
	a.mu.Lock()
	want := e.incoming.nonce
	a.mu.Unlock()
	if want == "" || nonce != want {
		return fmt.Errorf("%w: wrong hook nonce", ErrBadRequest)
	}
	return a.takeAddress(ctx, e, false)
}

// takeAddress points the switch at this host and unlocks the incoming
// container's namespace. The direct engine calls it from CRIU's
// pre-resume notification, the runc engine through the hook.
//
// With holdTCP (the direct engine, which calls goLiveTCP once the tasks
// run), only UDP goes through at once: the clients' TCP frames that reach
// this host meanwhile are caught, and the namespace's TCP stays locked, so
// nothing here acknowledges a client's data before the restore can no
// longer fail (docs/soak.md, finding 13).
func (a *Agent) takeAddress(ctx context.Context, e *entry, holdTCP bool) error {
	a.mu.Lock()
	in := e.incoming
	spec := e.info.ContainerSpec
	stopped := in.stopped
	in.live = !stopped
	a.mu.Unlock()
	if stopped {
		return errStoppedBeforeGoLive
	}
	// A namespace removed under the restore (by someone else) would leave
	// the container locked in a namespace nobody can name: give up the
	// restore instead, before the address moves (see errNamespaceGone).
	if _, err := os.Stat(nsrun.Path(a.netns(spec.Name))); err != nil {
		return fmt.Errorf("%w: %v", errNamespaceGone, err)
	}
	var catch *handoff.Catcher
	if holdTCP {
		// Before the address moves: from the steer on, frames come here.
		c, err := handoff.Start(a.cfg.HostNetns, a.cfg.Uplink, net.HardwareAddr(spec.MAC), spec.IP, "")
		if err != nil {
			return fmt.Errorf("catch the clients' TCP frames: %w", err)
		}
		catch = c
	}
	start := time.Now()
	if err := a.cfg.Steerer.Steer(ctx, spec.IP, net.HardwareAddr(spec.MAC), a.cfg.Name); err != nil {
		if catch != nil {
			catch.Discard()
		}
		return fmt.Errorf("steer %s to %s: %w", spec.IP, a.cfg.Name, err)
	}
	a.mu.Lock()
	in.switched, in.switchTook = true, time.Since(start)
	a.mu.Unlock()
	if err := a.saveIncoming(e); err != nil {
		a.log.Warn("went live unrecorded: a restart of this agent now would remove the copy", "name", spec.Name, "err", err)
	}
	a.log.Info("took the address inside the restore", "name", spec.Name, "ip", spec.IP, "steer", in.switchTook)
	open := cnet.Unlock
	if holdTCP {
		open = cnet.OpenUDP
	}
	if err := open(a.netns(spec.Name)); err != nil {
		if catch != nil {
			catch.Discard()
		}
		return err
	}
	if catch != nil {
		a.mu.Lock()
		in.catch = catch
		a.mu.Unlock()
	}
	if in.from != "" {
		a.askHandoff(ctx, in.from, in.plain, spec.Name) // see golive_handoff.go
	}
	if f := a.faults.afterGoLive; f != nil {
		f()
	}
	return nil
}

// goLiveTCP ends a go-live that held TCP back (takeAddress): the tasks
// run, so the namespace opens to TCP too and the frames caught since the
// steer (the clients' own, and those the source handed over) go in.
func (a *Agent) goLiveTCP(e *entry) {
	c := a.takeCatch(e)
	if c == nil {
		return
	}
	name := e.info.Name
	if err := cnet.Unlock(a.netns(name)); err != nil {
		a.log.Error("could not open TCP after the resume", "name", name, "err", err)
	}
	if r, err := c.Release(); err != nil {
		a.log.Warn("TCP frames caught during the go-live not delivered", "name", name, "err", err)
	} else if r.Frames > 0 {
		a.log.Debug("delivered the TCP frames caught during the go-live", "name", name, "frames", r.Frames)
	}
}

// dropCatch discards a go-live's TCP catcher that never got to deliver
// (the restore failed before the tasks resumed).
func (a *Agent) dropCatch(e *entry) {
	if c := a.takeCatch(e); c != nil {
		c.Discard()
	}
}

// takeCatch removes an incoming container's go-live catcher, so that one
// caller alone delivers or discards it.
func (a *Agent) takeCatch(e *entry) *handoff.Catcher {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := e.incoming.catch
	e.incoming.catch = nil
	return c
}

// errNamespaceGone: an incoming container's namespace was removed while
// it was being restored. Unlike other go-live failures, after which the
// source steers instead, the restored copy cannot be reached: the restore
// counts as failed, the source keeps the container.
var errNamespaceGone = errors.New("the container's network namespace is gone")

// errStoppedBeforeGoLive: the restore was stopped (its source's request
// ended, or an abort came) before it took the address. Like a namespace
// gone, the copy must not run: nobody will commit it.
var errStoppedBeforeGoLive = errors.New("the migration was stopped before the container went live")

// HookMain is `cflow agent hook`: it asks the agent to take the address of
// an incoming container. Exit status 0 lets CRIU resume the container.
func HookMain(args []string) int {
	fs := flag.NewFlagSet("agent hook", flag.ContinueOnError)
	socket := fs.String("socket", "", "agent unix socket")
	name := fs.String("name", "", "incoming container")
	nonce := fs.String("nonce", "", "one-time credential")
	if err := fs.Parse(args); err != nil || *socket == "" || *name == "" {
		fmt.Fprintln(os.Stderr, "usage: agent hook --socket PATH --name NAME --nonce N")
		return 2
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", *socket)
	}}}
	body, _ := json.Marshal(hookRequest{Nonce: *nonce})
	resp, err := hc.Post("http://agent/v1/migrations/"+*name+"/hook", "application/json", bytes.NewReader(body))
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent hook:", err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		fmt.Fprintf(os.Stderr, "agent hook: %s (HTTP %d)\n", e.Error, resp.StatusCode)
		return 1
	}
	return 0
}
