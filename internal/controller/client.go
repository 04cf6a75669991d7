package controller

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/containerflow/containerflow/internal/nsrun"
)

// Client talks to a controller. Base URLs are http://HOST:PORT or
// unix:///path/to/controller.sock.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// ClientOptions configure NewClient.
type ClientOptions struct {
	// Token is sent as a bearer token with every write.
	Token string
	// Timeout bounds each request (default 10 s).
	Timeout time.Duration
	// HTTPClient, when set, is used as is (for a base http://...), e.g.
	// with a transport that dials from inside a network namespace.
	HTTPClient *http.Client
	// TLS is the client's configuration for https:// base URLs (mutual
	// TLS: see pki.Identity.ClientConfig).
	TLS *tls.Config
	// Netns, when set, makes TCP connections from inside that network
	// namespace.
	Netns string
}

// NewClient returns a client for the controller at base.
func NewClient(base string, o ClientOptions) *Client {
	d := &net.Dialer{Timeout: 3 * time.Second}
	tr := &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 60 * time.Second, DialContext: d.DialContext, TLSClientConfig: o.TLS}
	url := strings.TrimRight(base, "/")
	if path, ok := strings.CutPrefix(base, "unix://"); ok {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		}
		url = "http://switch"
	} else if o.Netns != "" {
		tr.DialContext = func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = nsrun.Do(o.Netns, func() error {
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		}
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.HTTPClient != nil {
		return &Client{base: url, token: o.Token, hc: o.HTTPClient}
	}
	return &Client{base: url, token: o.Token, hc: &http.Client{Transport: tr, Timeout: o.Timeout}}
}

// APIError is an error answer of the controller.
type APIError struct {
	Status int
	Msg    string
	Field  string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("switch controller: %s (HTTP %d)", e.Msg, e.Status)
}

// Unwrap maps the status back to the controller's sentinels, so callers
// can test errors.Is(err, controller.ErrNotFound) on either side.
func (e *APIError) Unwrap() error {
	switch e.Status {
	case http.StatusBadRequest:
		return ErrInvalid
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusConflict:
		return ErrConflict
	case http.StatusInsufficientStorage:
		return ErrTableFull
	case http.StatusUnauthorized:
		return ErrUnauthorized
	}
	return nil
}

// Do sends a request with a JSON body (nil for none) and decodes a JSON
// answer into out (nil to discard it).
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var eb ErrorBody
		if json.Unmarshal(b, &eb) != nil || eb.Error == "" {
			eb.Error = strings.TrimSpace(string(b))
		}
		return &APIError{Status: resp.StatusCode, Msg: eb.Error, Field: eb.Field}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

// Health reads GET /v1/health.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	return h, c.Do(ctx, http.MethodGet, "/v1/health", nil, &h)
}

// Ports reads the attached ports with their counters.
func (c *Client) Ports(ctx context.Context) ([]PortView, error) {
	var out []PortView
	return out, c.Do(ctx, http.MethodGet, "/v1/ports", nil, &out)
}

// Addresses reads the address table with counters.
func (c *Client) Addresses(ctx context.Context) ([]AddressView, error) {
	var out []AddressView
	return out, c.Do(ctx, http.MethodGet, "/v1/addresses", nil, &out)
}

// Address reads one address entry.
func (c *Client) Address(ctx context.Context, ip netip.Addr) (AddressView, error) {
	var out AddressView
	return out, c.Do(ctx, http.MethodGet, "/v1/addresses/"+ip.String(), nil, &out)
}

// SetAddress creates or replaces an address entry.
func (c *Client) SetAddress(ctx context.Context, ip netip.Addr, spec AddressSpec) error {
	return c.Do(ctx, http.MethodPut, "/v1/addresses/"+ip.String(), spec, nil)
}

// MoveAddress points both views of ip at port in one table update, with
// the optional destination MAC rewrite (nil for none).
func (c *Client) MoveAddress(ctx context.Context, ip netip.Addr, port PortRef, dstMAC net.HardwareAddr) error {
	return c.Do(ctx, http.MethodPost, "/v1/addresses/"+ip.String()+"/move", MoveRequest{Port: port, DstMAC: macString(dstMAC)}, nil)
}

// DeleteAddress removes an address entry.
func (c *Client) DeleteAddress(ctx context.Context, ip netip.Addr) error {
	return c.Do(ctx, http.MethodDelete, "/v1/addresses/"+ip.String(), nil, nil)
}

func servicePath(r ServiceRef) string {
	return fmt.Sprintf("/v1/services/%s/%s/%d", strings.ToLower(r.Proto), r.VIP, r.Port)
}

// Services reads the services with their counters.
func (c *Client) Services(ctx context.Context) ([]ServiceView, error) {
	var out []ServiceView
	return out, c.Do(ctx, http.MethodGet, "/v1/services", nil, &out)
}

// SetService creates or replaces a service.
func (c *Client) SetService(ctx context.Context, s ServiceSpec) error {
	return c.Do(ctx, http.MethodPut, servicePath(s.ServiceRef), membersBody{Members: s.Members}, nil)
}

// DeleteService removes a service and its flows.
func (c *Client) DeleteService(ctx context.Context, r ServiceRef) error {
	return c.Do(ctx, http.MethodDelete, servicePath(r), nil, nil)
}

// Conntrack reads the connection table.
func (c *Client) Conntrack(ctx context.Context) ([]FlowView, error) {
	var out []FlowView
	return out, c.Do(ctx, http.MethodGet, "/v1/conntrack", nil, &out)
}

// Counters reads the port and global counters.
func (c *Client) Counters(ctx context.Context) (Counters, error) {
	var out Counters
	return out, c.Do(ctx, http.MethodGet, "/v1/counters", nil, &out)
}

// Batch applies ops all or nothing.
func (c *Client) Batch(ctx context.Context, ops ...Op) error {
	return c.Do(ctx, http.MethodPost, "/v1/batch", Batch{Ops: ops}, nil)
}

// UpdateForward is the seed's /updateForward.
func (c *Client) UpdateForward(ctx context.Context, ip netip.Addr, swPort uint32, dstMAC net.HardwareAddr) error {
	body := map[string]any{"ipv4": ip.String(), "sw_port": swPort}
	if dstMAC != nil {
		body["dst_mac"] = dstMAC.String()
	}
	return c.Do(ctx, http.MethodPost, "/updateForward", body, nil)
}

// WaitReady polls the health endpoint until the controller answers or ctx
// ends.
func (c *Client) WaitReady(ctx context.Context) error {
	var last error
	for {
		if _, err := c.Health(ctx); err == nil {
			return nil
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
