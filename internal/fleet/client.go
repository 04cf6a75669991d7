package fleet

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/containerflow/containerflow/internal/agent"
	"github.com/containerflow/containerflow/internal/controller"
)

// Client is the fleet's API seen from the CLI and the agents, through a
// controller client.
type Client struct{ C *controller.Client }

func (c Client) do(ctx context.Context, method, path string, in, out any) error {
	return c.C.Do(ctx, method, path, in, out)
}

// Register is an agent announcing itself (repeated: see RegisterLoop).
func (c Client) Register(ctx context.Context, host, agentURL string) (Host, error) {
	var h Host
	return h, c.do(ctx, http.MethodPut, "/v1/hosts/"+url.PathEscape(host), RegisterRequest{URL: agentURL}, &h)
}

// RegisterLoop registers host now and every interval until ctx ends, so a
// controller that lost its state or was started later learns the host.
func (c Client) RegisterLoop(ctx context.Context, host, agentURL string, interval time.Duration, logf func(error)) {
	for {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := c.Register(rctx, host, agentURL)
		cancel()
		if err != nil && ctx.Err() == nil {
			logf(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

func (c Client) Hosts(ctx context.Context) ([]HostStatus, error) {
	var out []HostStatus
	return out, c.do(ctx, http.MethodGet, "/v1/hosts", nil, &out)
}

func (c Client) Status(ctx context.Context) (Status, error) {
	var out Status
	return out, c.do(ctx, http.MethodGet, "/v1/status", nil, &out)
}

func (c Client) Evacuate(ctx context.Context, host string, concurrency int) (Operation, error) {
	var op Operation
	return op, c.do(ctx, http.MethodPost, "/v1/hosts/"+url.PathEscape(host)+"/evacuate", EvacuateRequest{Concurrency: concurrency}, &op)
}

// SetSchedulable cordons (false) or resumes (true) a host.
func (c Client) SetSchedulable(ctx context.Context, host string, on bool) (Host, error) {
	verb := "/cordon"
	if on {
		verb = "/resume"
	}
	var h Host
	return h, c.do(ctx, http.MethodPost, "/v1/hosts/"+url.PathEscape(host)+verb, nil, &h)
}

func (c Client) Operations(ctx context.Context) ([]Operation, error) {
	var out []Operation
	return out, c.do(ctx, http.MethodGet, "/v1/operations", nil, &out)
}

// Operation reads one operation; wait > 0 waits (up to a minute) for it
// to end.
func (c Client) Operation(ctx context.Context, id string, wait time.Duration) (Operation, error) {
	path := "/v1/operations/" + url.PathEscape(id)
	if wait > 0 {
		path += "?wait=" + wait.String()
	}
	var op Operation
	return op, c.do(ctx, http.MethodGet, path, nil, &op)
}

func (c Client) Cancel(ctx context.Context, id string) (Operation, error) {
	var op Operation
	return op, c.do(ctx, http.MethodPost, "/v1/operations/"+url.PathEscape(id)+"/cancel", nil, &op)
}

func (c Client) Migrate(ctx context.Context, container, to string) (Operation, error) {
	var op Operation
	return op, c.do(ctx, http.MethodPost, "/v1/migrations", MigrationRequest{Container: container, To: to}, &op)
}

func (c Client) Rebalance(ctx context.Context, req RebalanceRequest) (RebalanceAnswer, error) {
	var a RebalanceAnswer
	return a, c.do(ctx, http.MethodPost, "/v1/rebalance", req, &a)
}

func (c Client) Place(ctx context.Context, req PlacementRequest) (string, error) {
	var out struct {
		Host string `json:"host"`
	}
	return out.Host, c.do(ctx, http.MethodPost, "/v1/placements", req, &out)
}

func (c Client) Run(ctx context.Context, spec agent.ContainerSpec, host string) (Operation, error) {
	var op Operation
	return op, c.do(ctx, http.MethodPost, "/v1/containers", RunRequest{Spec: spec, Host: host}, &op)
}
