package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// LogOptions selects what part of a container's log to read.
type LogOptions struct {
	// From is the offset to start at (bytes since the container's first
	// output, on any host); negative: not set.
	From int64
	// Tail, when From is not set, starts at the last Tail lines; negative:
	// everything kept.
	Tail int
	// Follow goes on with the container's new output.
	Follow bool
}

// LogStream is a container's log as an agent sends it.
type LogStream struct {
	Start int64 // offset of the first byte
	resp  *http.Response
	n     int64
	eof   bool
}

func (s *LogStream) Read(p []byte) (int, error) {
	n, err := s.resp.Body.Read(p)
	s.n += int64(n)
	if err == io.EOF {
		s.eof = true
	}
	return n, err
}

// Close ends the stream.
func (s *LogStream) Close() error { return s.resp.Body.Close() }

// End returns, once the stream has been read to its end, the offset after
// its last byte and why it ended; ok is false if the agent did not say so
// or the bytes do not add up (the stream was cut).
func (s *LogStream) End() (end int64, reason string, ok bool) {
	if !s.eof {
		return s.Start + s.n, "", false
	}
	end, err := strconv.ParseInt(s.resp.Trailer.Get(TrailerLogEnd), 10, 64)
	if err != nil || end != s.Start+s.n {
		return s.Start + s.n, "", false
	}
	return end, s.resp.Trailer.Get(TrailerLogReason), true
}

func (c *Client) openLog(ctx context.Context, path string) (*LogStream, error) {
	resp, err := c.request(ctx, "GET", path, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		return nil, decodeResp(resp, nil)
	}
	start, err := strconv.ParseInt(resp.Header.Get(HeaderLogStart), 10, 64)
	if err != nil {
		resp.Body.Close()
		return nil, fmt.Errorf("agent: log without a valid %s header", HeaderLogStart)
	}
	return &LogStream{Start: start, resp: resp}, nil
}

// OpenLogs starts reading a container's log.
func (c *Client) OpenLogs(ctx context.Context, name string, o LogOptions) (*LogStream, error) {
	q := url.Values{}
	if o.From >= 0 {
		q.Set("from", strconv.FormatInt(o.From, 10))
	} else if o.Tail >= 0 {
		q.Set("tail", strconv.Itoa(o.Tail))
	}
	if o.Follow {
		q.Set("follow", "1")
	}
	p := "/v1/containers/" + url.PathEscape(name) + "/logs"
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	return c.openLog(ctx, p)
}

// relocateTimeout bounds how long FollowLogs looks for a container that
// left the host it was followed on.
const relocateTimeout = 60 * time.Second

// FollowLogs copies a container's log to w and, with o.Follow, goes on
// with its output until the container stops or is removed, or ctx ends.
// When the container migrates, it goes on from the same offset on the
// container's new host, so that no byte is repeated or missed. hosts are
// the agents to look for the container on; notes (if not nil) gets what
// the reader should know about gaps (output rotated away before it was
// read).
func FollowLogs(ctx context.Context, hosts []*Client, name string, o LogOptions, w, notes io.Writer) error {
	c, err := locate(ctx, hosts, name, false)
	if err != nil {
		return err
	}
	for {
		ls, err := c.OpenLogs(ctx, name, o)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if o.From >= 0 && ls.Start > o.From && notes != nil {
			fmt.Fprintf(notes, "(log bytes %d-%d were rotated away before they could be read)\n", o.From, ls.Start)
		}
		ew := &errWriter{w: w}
		_, _ = io.Copy(ew, ls)
		ls.Close()
		end, reason, ok := ls.End()
		switch {
		case ew.err != nil:
			return ew.err
		case ctx.Err() != nil:
			return nil
		case !o.Follow && !ok:
			return fmt.Errorf("log of %s cut at offset %d", name, end)
		case reason == LogEndGap:
			o.From, o.Tail = end, -1 // same host, from the next byte kept
			continue
		case !o.Follow || reason == LogEndExited:
			return nil
		}
		// Where it went (or came back to, after a failed migration); a cut
		// stream goes on from the last byte received.
		o.From, o.Tail = end, -1
		if c, err = locate(ctx, hosts, name, true); err != nil {
			if ctx.Err() != nil || errors.Is(err, errGone) {
				return nil
			}
			return err
		}
	}
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil {
		e.err = err
	}
	return n, err
}

var errGone = errors.New("container is on no host")

// locate finds the host running the container. moving: it may be between
// hosts (migrating on one, incoming on the other) — wait until it runs
// somewhere, or has been on no host for a while (removed).
func locate(ctx context.Context, hosts []*Client, name string, moving bool) (*Client, error) {
	deadline := time.Now().Add(relocateTimeout)
	var absent time.Time
	for {
		var found *Client
		seen := false
		for _, c := range hosts {
			info, err := c.Get(ctx, name)
			if err != nil {
				continue
			}
			seen = true
			if info.State == StateRunning || !moving {
				found = c
				break
			}
		}
		if found != nil {
			return found, nil
		}
		if !moving {
			return nil, fmt.Errorf("container %q is not on any host", name)
		}
		switch {
		case seen:
			absent = time.Time{}
		case absent.IsZero():
			absent = time.Now()
		case time.Since(absent) > 2*time.Second:
			return nil, errGone
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("container %q did not settle on a host within %v", name, relocateTimeout)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
