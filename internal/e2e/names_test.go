package e2e

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/agent"
	"github.com/containerflow/containerflow/internal/controller"
	"github.com/containerflow/containerflow/internal/nsrun"
	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/testbed/tbtest"
)

// One namespace of names and addresses across the hosts, and the
// lifecycle of containers that end, on the testbed as users run it: the
// controller and the agents as processes, real runc.
func TestNamesAndLifecycle(t *testing.T) {
	tbtest.RequireRoot(t, "the testbed and runc")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tb := tbtest.Up(t, "n", testbed.Config{AgentBinary: self})
	tok, err := tb.Token()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ag := map[string]*agent.Client{}
	for _, h := range testbed.Hosts {
		ag[h] = agent.NewClient("unix://"+tb.AgentSocket(h), agent.ClientOptions{Token: tok})
	}
	ctl := tb.ControllerClient()
	sleep := []string{"sleep", "1000"}

	// No --ip: the registry allocates the first free address.
	web, err := ag[testbed.HostA].Run(ctx, agent.ContainerSpec{Name: "web", Args: sleep})
	if err != nil {
		t.Fatal(err)
	}
	if web.IP.String() != "198.18.0.2" || web.MAC.String() != "02:42:c6:12:00:02" {
		t.Fatalf("allocated %s %s", web.IP, web.MAC)
	}
	api, err := ag[testbed.HostB].Run(ctx, agent.ContainerSpec{Name: "api", Args: sleep})
	if err != nil {
		t.Fatal(err)
	}
	if api.IP.String() != "198.18.0.3" || !testbed.DataNet.Contains(api.IP) {
		t.Fatalf("second allocation: %s", api.IP)
	}

	refused := func(host string, s agent.ContainerSpec, status int, want string) {
		t.Helper()
		_, err := ag[host].Run(ctx, s)
		var e *agent.APIError
		if !errors.As(err, &e) || e.Status != status || !strings.Contains(e.Msg, want) {
			t.Fatalf("run %s on %s: got %v, want HTTP %d with %q", s.Name, host, err, status, want)
		}
		// Nothing left behind: no namespace, no reservation, no container.
		if nsrun.Exists(tb.ContainerNetnsPrefix(host) + s.Name) {
			t.Errorf("refused %s left its namespace", s.Name)
		}
		if !strings.Contains(want, "name ") { // else the name is another container's
			if _, err := ctl.Name(ctx, s.Name); !errors.Is(err, controller.ErrNotFound) {
				t.Errorf("refused %s left a reservation: %v", s.Name, err)
			}
			if _, err := ag[host].Get(ctx, s.Name); err == nil {
				t.Errorf("refused %s is listed", s.Name)
			}
		}
	}
	refused(testbed.HostB, agent.ContainerSpec{Name: "web", Args: sleep}, http.StatusConflict, `name "web" is in use on hostA`)
	refused(testbed.HostB, agent.ContainerSpec{Name: "db", IP: web.IP, Args: sleep}, http.StatusConflict,
		`address 198.18.0.2 is in use by "web" on hostA`)
	refused(testbed.HostA, agent.ContainerSpec{Name: "db", IP: api.IP, Args: sleep}, http.StatusConflict,
		`address 198.18.0.3 is in use by "api" on hostB`)
	refused(testbed.HostA, agent.ContainerSpec{Name: "db", IP: mustIP("198.19.0.5"), Args: sleep}, http.StatusBadRequest,
		"outside the container network 198.18.0.0/24")
	refused(testbed.HostA, agent.ContainerSpec{Name: "db", IP: mustIP("198.18.0.11"), Args: sleep}, http.StatusConflict, "is a node's")
	refused(testbed.HostA, agent.ContainerSpec{Name: "db", Args: nil}, http.StatusBadRequest, "")
	if err := ag[testbed.HostA].Remove(ctx, "nobody"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("rm of an unknown name: %v", err)
	}

	// The registry survives a restart of the controller.
	switchNs, _ := tb.Netns(testbed.Switch)
	pids, _ := nsrun.Pids(switchNs)
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	waitFor(t, "controller gone", func() bool { _, err := ctl.Health(ctx); return err != nil })
	if err := tb.StartController(self); err != nil {
		t.Fatal(err)
	}
	names, err := ctl.Names(ctx)
	if err != nil || len(names) != 2 || names[0].Name != "api" || names[1].Name != "web" || names[1].Host != testbed.HostA {
		t.Fatalf("registry after a controller restart: %+v %v", names, err)
	}
	refused(testbed.HostB, agent.ContainerSpec{Name: "web", Args: sleep}, http.StatusConflict, `name "web" is in use on hostA`)

	// rm removes the container, its reservation and its switch entry.
	if _, err := ctl.Address(ctx, web.IP); err != nil {
		t.Fatalf("switch entry of a running container: %v", err)
	}
	if err := ag[testbed.HostA].Remove(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Address(ctx, web.IP); !errors.Is(err, controller.ErrNotFound) {
		t.Fatalf("switch entry after rm: %v", err)
	}
	dp, err := tb.OpenDataplane()
	if err != nil {
		t.Fatal(err)
	}
	_, derr := dp.Address(web.IP)
	dp.Close()
	if derr == nil {
		t.Fatal("the data plane still has the removed container's address")
	}
	if _, err := ctl.Name(ctx, "web"); !errors.Is(err, controller.ErrNotFound) {
		t.Fatalf("reservation after rm: %v", err)
	}
	// The name and address are free again, on the other host too.
	if _, err := ag[testbed.HostB].Run(ctx, agent.ContainerSpec{Name: "web", IP: web.IP, Args: sleep}); err != nil {
		t.Fatalf("reuse after rm: %v", err)
	}

	// An exited container is listed as exited, with its exit code.
	if _, err := ag[testbed.HostA].Run(ctx, agent.ContainerSpec{Name: "ex", Args: []string{"sh", "-c", "sleep 0.2; exit 3"}}); err != nil {
		t.Fatal(err)
	}
	var ex agent.ContainerInfo
	waitFor(t, "ex exited", func() bool { ex, _ = ag[testbed.HostA].Get(ctx, "ex"); return ex.State == agent.StateExited })
	if ex.Exit == nil || !ex.Exit.Known || ex.Exit.Code != 3 {
		t.Fatalf("exit of ex: %+v", ex.Exit)
	}
	// A program that ends at once, before Run returns, too.
	quick, err := ag[testbed.HostA].Run(ctx, agent.ContainerSpec{Name: "quick", Args: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "quick exited", func() bool { quick, _ = ag[testbed.HostA].Get(ctx, "quick"); return quick.State == agent.StateExited })
	if quick.Exit == nil || !quick.Exit.Known || quick.Exit.Code != 0 {
		t.Fatalf("exit of quick: %+v", quick.Exit)
	}
	// Still holding its name until removed.
	refused(testbed.HostB, agent.ContainerSpec{Name: "ex", Args: sleep}, http.StatusConflict, `name "ex" is in use on hostA`)
	if err := ag[testbed.HostA].Remove(ctx, "ex"); err != nil {
		t.Fatal(err)
	}

	// --rm: gone when it exits, reservation and namespace with it.
	tmp, err := ag[testbed.HostB].Run(ctx, agent.ContainerSpec{Name: "tmp", Lifecycle: agent.Lifecycle{AutoRemove: true},
		Args: []string{"sh", "-c", "sleep 0.2"}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "tmp removed", func() bool { _, err := ag[testbed.HostB].Get(ctx, "tmp"); return err != nil })
	// The agent releases the reservation once the container is gone
	// (removeExited): a moment after Get stops finding it.
	waitFor(t, "tmp's reservation released", func() bool {
		_, err := ctl.Name(ctx, "tmp")
		return errors.Is(err, controller.ErrNotFound)
	})
	if _, err := ctl.Address(ctx, tmp.IP); !errors.Is(err, controller.ErrNotFound) {
		t.Fatalf("switch entry of a --rm container: %v", err)
	}
	if nsrun.Exists(tb.ContainerNetnsPrefix(testbed.HostB) + "tmp") {
		t.Fatal("namespace of a --rm container left")
	}

	// --restart on-failure:2: started twice more, then left exited.
	if _, err := ag[testbed.HostA].Run(ctx, agent.ContainerSpec{Name: "rs", Lifecycle: agent.Lifecycle{Restart: "on-failure:2"},
		Args: []string{"sh", "-c", "sleep 0.2; exit 1"}}); err != nil {
		t.Fatal(err)
	}
	var rs agent.ContainerInfo
	waitFor(t, "rs restarted twice", func() bool {
		rs, _ = ag[testbed.HostA].Get(ctx, "rs")
		return rs.State == agent.StateExited && rs.Restarts == 2
	})
	if rs.Exit == nil || rs.Exit.Code != 1 {
		t.Fatalf("rs: %+v", rs)
	}
	if _, err := ag[testbed.HostA].Run(ctx, agent.ContainerSpec{Name: "bad", Lifecycle: agent.Lifecycle{Restart: "always"}, Args: sleep}); err == nil {
		t.Fatal("an unknown restart policy was accepted")
	}

	// A migration keeps the reservation and moves it to the new host.
	if _, err := ag[testbed.HostB].Migrate(ctx, "api", agent.MigrateRequest{To: testbed.HostA}); err != nil {
		t.Fatal(err)
	}
	// Recorded before the migrate call answered.
	if r, err := ctl.Name(ctx, "api"); err != nil || r.Host != testbed.HostA || r.IP != api.IP.String() {
		t.Fatalf("api in the registry after its migration to hostA: %+v %v", r, err)
	}
	if err := ag[testbed.HostA].Remove(ctx, "api"); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Name(ctx, "api"); !errors.Is(err, controller.ErrNotFound) {
		t.Fatalf("reservation of a migrated container after rm: %v", err)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// `testbed up --no-auth`: the controller and the agents take writes
// without a token (the seed's scripts send none), and no token file is
// written.
func TestNoAuthTestbed(t *testing.T) {
	tbtest.RequireRoot(t, "the testbed")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tb := tbtest.Up(t, "u", testbed.Config{AgentBinary: self, NoAuth: true})
	if _, err := os.Stat(tb.TokenFile()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("token file of a no-auth testbed: %v", err)
	}
	ctx := context.Background()
	a := agent.NewClient("unix://"+tb.AgentSocket(testbed.HostA), agent.ClientOptions{})
	info, err := a.Run(ctx, agent.ContainerSpec{Name: "s", Args: []string{"sleep", "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	ctl := controller.NewClient("unix://"+tb.ControllerSocket(), controller.ClientOptions{})
	if err := ctl.Do(ctx, http.MethodPost, "/reinitialize", map[string]any{}, nil); err != nil {
		t.Fatal(err)
	}
	if av, err := ctl.Address(ctx, info.IP); err != nil || av.Forward == nil || av.Forward.PortName != testbed.HostA {
		t.Fatalf("the container's steering after /reinitialize: %+v %v", av, err)
	}
}
