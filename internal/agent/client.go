package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/containerflow/containerflow/internal/nsrun"
	"github.com/containerflow/containerflow/internal/runtime"
	"github.com/containerflow/containerflow/internal/tclass"
	"github.com/containerflow/containerflow/internal/tlsbatch"
)

// Client talks to an agent. Base URLs are http://HOST:PORT or
// unix:///path/to/agent.sock.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// ClientOptions configures NewClient.
type ClientOptions struct {
	Token string
	// Netns, when set, makes TCP connections from inside that network
	// namespace (an agent embedded in a process that lives elsewhere).
	Netns string
	// TLS is the client's configuration for https:// base URLs (mutual
	// TLS: see pki.Identity.ClientConfig).
	TLS *tls.Config
	// DSCP, when it marks (tclass.Marks), is set on every TCP connection
	// the client dials: an agent's clients of its peers carry the
	// migration class's mark.
	DSCP int
}

// NewClient returns a client for the agent at base.
func NewClient(base string, o ClientOptions) *Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second, TLSClientConfig: o.TLS}
	url := strings.TrimRight(base, "/")
	if path, ok := strings.CutPrefix(base, "unix://"); ok {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		}
		return &Client{base: "http://agent", token: o.Token, hc: &http.Client{Transport: tr}}
	}
	d.Control = tclass.Control(o.DSCP)
	dial := d.DialContext
	if o.Netns != "" {
		dial = func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = nsrun.Do(o.Netns, func() error {
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		}
	}
	tr.DialContext = dial
	// The image stream is most of what crosses: 64 KiB writes (net/http's
	// default is 4 KiB), and over TLS their records leave in one send
	// (tlsbatch).
	tr.WriteBufferSize = 64 << 10
	if o.TLS != nil {
		tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			raw, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			cfg := o.TLS
			if cfg.ServerName == "" {
				cfg = cfg.Clone()
				cfg.ServerName, _, _ = net.SplitHostPort(addr)
			}
			return tlsbatch.Client(ctx, raw, cfg)
		}
	}
	return &Client{base: url, token: o.Token, hc: &http.Client{Transport: tr}}
}

// secure says calls go over TLS.
func (c *Client) secure() bool { return strings.HasPrefix(c.base, "https://") }

// peerClient returns the client of host's agent, over TLS when this agent
// has an identity, or over the peer's plain listener when plain is set
// (and it has one). Clients are kept, so that the calls of a migration
// inside its frozen window (the image stream, the handoff, the commit)
// find a connection, and its TLS session, already open.
func (a *Agent) peerClient(host string, plain bool) (*Client, error) {
	base, ok := a.cfg.Peers[host]
	if plain {
		if b, pok := a.cfg.PlainPeers[host]; pok {
			base, ok = b, true
		} else if a.cfg.TLS != nil {
			return nil, fmt.Errorf("%w: %s has no plain (--insecure) listener configured", ErrBadRequest, host)
		}
	}
	if !ok {
		return nil, fmt.Errorf("%w: unknown host %q", ErrNotFound, host)
	}
	key := host + " " + base
	a.peersMu.Lock()
	defer a.peersMu.Unlock()
	if c := a.peers[key]; c != nil {
		return c, nil
	}
	o := ClientOptions{Token: a.cfg.Token, Netns: a.cfg.HostNetns, DSCP: a.cfg.MigrationDSCP}
	if strings.HasPrefix(base, "https://") {
		if a.cfg.TLS == nil {
			return nil, fmt.Errorf("peer %s is https but this agent has no certificate", host)
		}
		o.TLS = a.cfg.TLS.ClientConfig(host)
	}
	if a.peers == nil {
		a.peers = map[string]*Client{}
	}
	c := NewClient(base, o)
	a.peers[key] = c
	return c, nil
}

// APIError is an error answer from an agent.
type APIError struct {
	Status   int
	Msg      string
	Switched bool // a failed restore had already taken the address
	// Reason is ReasonCapacity when the container did not fit (409), with
	// Refused saying what it asked and what was free.
	Reason  string
	Refused *CapacityError
}

func (e *APIError) Error() string { return fmt.Sprintf("agent: %s (HTTP %d)", e.Msg, e.Status) }

// Unwrap lets errors.As find a capacity refusal in an answer.
func (e *APIError) Unwrap() error {
	if e.Refused == nil {
		return nil
	}
	return e.Refused
}

// errorBody is the JSON of an error answer.
type errorBody struct {
	Error    string         `json:"error"`
	Switched bool           `json:"switched"`
	Reason   string         `json:"reason"`
	Refused  *CapacityError `json:"refused"`
}

func (b errorBody) apiError(status int) *APIError {
	return &APIError{Status: status, Msg: b.Error, Switched: b.Switched, Reason: b.Reason, Refused: b.Refused}
}

func (c *Client) request(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return c.hc.Do(req)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	resp, err := c.request(ctx, method, path, body)
	if err != nil {
		return err
	}
	return decodeResp(resp, out)
}

func (c *Client) doStream(ctx context.Context, path string, body io.Reader, out any) error {
	resp, err := c.request(ctx, "POST", path, body)
	if err != nil {
		return err
	}
	return decodeResp(resp, out)
}

func decodeResp(resp *http.Response, out any) error {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e errorBody
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return e.apiError(resp.StatusCode)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// Run starts a container.
func (c *Client) Run(ctx context.Context, s ContainerSpec) (ContainerInfo, error) {
	var info ContainerInfo
	err := c.do(ctx, "POST", "/v1/containers", s, &info)
	return info, err
}

// List lists containers.
func (c *Client) List(ctx context.Context) ([]ContainerInfo, error) {
	var out []ContainerInfo
	err := c.do(ctx, "GET", "/v1/containers", nil, &out)
	return out, err
}

// Get returns one container.
func (c *Client) Get(ctx context.Context, name string) (ContainerInfo, error) {
	var out ContainerInfo
	err := c.do(ctx, "GET", "/v1/containers/"+name, nil, &out)
	return out, err
}

// Remove deletes a container.
func (c *Client) Remove(ctx context.Context, name string) error {
	return c.do(ctx, "DELETE", "/v1/containers/"+name, nil, nil)
}

// Logs returns a container's output so far.
func (c *Client) Logs(ctx context.Context, name string) ([]byte, error) {
	resp, err := c.request(ctx, "GET", "/v1/containers/"+name+"/logs", nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		return nil, decodeResp(resp, nil)
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// Signal sends a signal to a container's init.
func (c *Client) Signal(ctx context.Context, name string, sig int) error {
	return c.do(ctx, "POST", "/v1/containers/"+name+"/signal", map[string]int{"signal": sig}, nil)
}

// Migrate moves a container; the record is returned also when the
// migration failed (with the error).
func (c *Client) Migrate(ctx context.Context, name string, req MigrateRequest) (*MigrationResult, error) {
	b, _ := json.Marshal(req)
	resp, err := c.request(ctx, "POST", "/v1/containers/"+name+"/migrate", bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var res MigrationResult
	var e errorBody // also beside a record: the reason of a refusal
	_ = json.Unmarshal(body, &e)
	if err := json.Unmarshal(body, &res.Record); err != nil || res.Record.Status == "" {
		return nil, e.apiError(resp.StatusCode)
	}
	if res.Record.Status != "success" {
		e.Error = res.Record.Error
		return &res, e.apiError(resp.StatusCode)
	}
	return &res, nil
}

// Reference checkpoints and restores a container in place with bare CRIU
// and returns how long each took.
func (c *Client) Reference(ctx context.Context, name string) (runtime.Reference, error) {
	var ref runtime.Reference
	err := c.do(ctx, "POST", "/v1/containers/"+name+"/reference", nil, &ref)
	return ref, err
}

// Health checks that the agent answers.
func (c *Client) Health(ctx context.Context) error {
	return c.do(ctx, "GET", "/v1/health", nil, nil)
}

// Host returns host statistics.
func (c *Client) Host(ctx context.Context) (HostStats, error) {
	var st HostStats
	err := c.do(ctx, "GET", "/v1/host", nil, &st)
	return st, err
}

// MetricsText returns the agent's Prometheus metrics as it serves them
// (text format).
func (c *Client) MetricsText(ctx context.Context) ([]byte, error) {
	resp, err := c.request(ctx, "GET", "/metrics", nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		return nil, decodeResp(resp, nil)
	}
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, 16<<20))
}

// Metrics returns the agent's Prometheus metrics, parsed: family name ->
// family.
func (c *Client) Metrics(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	b, err := c.MetricsText(ctx)
	if err != nil {
		return nil, err
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(bytes.NewReader(b))
}
