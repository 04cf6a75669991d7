package controller

import (
	"context"
	"net/http"
	"net/url"
)

// Names reads every reservation of the name registry.
func (c *Client) Names(ctx context.Context) ([]NameRecord, error) {
	var out []NameRecord
	return out, c.Do(ctx, http.MethodGet, "/v1/names", nil, &out)
}

// Name reads one reservation.
func (c *Client) Name(ctx context.Context, name string) (NameRecord, error) {
	var out NameRecord
	return out, c.Do(ctx, http.MethodGet, "/v1/names/"+url.PathEscape(name), nil, &out)
}

// Reserve takes a name and an address (allocated when req.IP is empty).
func (c *Client) Reserve(ctx context.Context, req NameRequest) (NameRecord, error) {
	var out NameRecord
	return out, c.Do(ctx, http.MethodPost, "/v1/names", req, &out)
}

// Claim records that req.Host now runs req.Name (see Controller.Claim).
func (c *Client) Claim(ctx context.Context, req NameRequest) (NameRecord, error) {
	var out NameRecord
	return out, c.Do(ctx, http.MethodPut, "/v1/names/"+url.PathEscape(req.Name), req, &out)
}

// Release frees a name, its address and the address's switch entry; host,
// when set, must be the name's host.
func (c *Client) Release(ctx context.Context, name, host string) (NameRecord, error) {
	var out NameRecord
	path := "/v1/names/" + url.PathEscape(name)
	if host != "" {
		path += "?host=" + url.QueryEscape(host)
	}
	return out, c.Do(ctx, http.MethodDelete, path, nil, &out)
}

// The Steerer is also the agents' way to the name registry: an agent
// configured to steer through a controller reserves its containers' names
// and addresses there (agent.Registry).

// Reserve implements agent.Registry.
func (s *Steerer) Reserve(ctx context.Context, req NameRequest) (NameRecord, error) {
	return s.Client.Reserve(ctx, req)
}

// Claim implements agent.Registry.
func (s *Steerer) Claim(ctx context.Context, req NameRequest) (NameRecord, error) {
	return s.Client.Claim(ctx, req)
}

// Release implements agent.Registry.
func (s *Steerer) Release(ctx context.Context, name, host string) error {
	_, err := s.Client.Release(ctx, name, host)
	return err
}
