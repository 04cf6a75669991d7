// Package audit appends one JSON line per state-changing request (every
// method but GET, HEAD and OPTIONS) of an API to a file: who asked, what,
// and how it ended, failures included. The file is 0600 and rotated by
// size (path, path.1, ... path.Keep), so it cannot fill the state dir.
package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/containerflow/containerflow/internal/httpserve"
)

const (
	// DefaultMaxBytes per file: about 40 000 writes, weeks of migrations.
	DefaultMaxBytes = 10 << 20
	// Keep rotated files besides the current one.
	Keep = 3
	// errBodyMax bounds how much of a failed answer is kept for its error.
	errBodyMax = 2 << 10
)

// Entry is one line of the log.
type Entry struct {
	Time   time.Time `json:"time"`
	Who    Identity  `json:"who"`
	Method string    `json:"method"`
	Path   string    `json:"path"`
	// Route is the API's pattern that matched ("" for no endpoint), and
	// Resource its wildcards: the container, migration, image or address
	// the request is about.
	Route    string            `json:"route,omitempty"`
	Resource map[string]string `json:"resource,omitempty"`
	Status   int               `json:"status"`
	Error    string            `json:"error,omitempty"`
	Ms       float64           `json:"duration_ms"`
}

// Identity says who made a request, as far as the server can tell.
type Identity struct {
	// Peer is the TCP address, or "unix" with the peer's uid and pid
	// (unix:uid=0,pid=123).
	Peer string `json:"peer"`
	// Token identifies a bearer token by the first 12 hex digits of its
	// SHA-256 ("" without one): enough to tell tokens apart, useless to
	// replay. Whether it was the right one shows in Status (401).
	Token string `json:"token,omitempty"`
	// TLS is the verified client certificate's subject ("" without one).
	TLS string `json:"tls,omitempty"`
}

// Who extracts the caller's identity from a request: the hook the TLS
// work extends (client certificates, SPIFFE IDs) so that every server's
// audit log names callers the same way.
func Who(r *http.Request) Identity {
	id := Identity{Peer: r.RemoteAddr}
	if c, ok := httpserve.Conn(r.Context()).(*net.UnixConn); ok {
		id.Peer = "unix"
		if raw, err := c.SyscallConn(); err == nil {
			_ = raw.Control(func(fd uintptr) {
				if cr, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
					id.Peer = fmt.Sprintf("unix:uid=%d,pid=%d", cr.Uid, cr.Pid)
				}
			})
		}
	}
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		id.Token = "sha256:" + hex.EncodeToString(sum[:6])
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		id.TLS = r.TLS.PeerCertificates[0].Subject.String()
	}
	return id
}

// Log is an audit file.
type Log struct {
	path string
	max  int64

	mu   sync.Mutex
	f    *os.File
	size int64
	warn time.Time // last complaint about a failed write
}

// Open opens (creating) the log at path, rotating when a file would pass
// maxBytes (DefaultMaxBytes when 0).
func Open(path string, maxBytes int64) (*Log, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	l := &Log{path: path, max: maxBytes}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *Log) open() error {
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	// A file made by an older version, or by hand, may be wider open.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("audit log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit log: %w", err)
	}
	l.f, l.size = f, fi.Size()
	return nil
}

// Path is the current file.
func (l *Log) Path() string { return l.path }

// Close closes the file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// Write appends e.
func (l *Log) Write(e Entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return os.ErrClosed
	}
	if l.size > 0 && l.size+int64(len(b)) > l.max {
		if err := l.rotate(); err != nil {
			return err
		}
	}
	n, err := l.f.Write(b)
	l.size += int64(n)
	return err
}

func (l *Log) rotate() error {
	l.f.Close()
	l.f = nil
	for i := Keep - 1; i >= 1; i-- {
		_ = os.Rename(l.path+"."+strconv.Itoa(i), l.path+"."+strconv.Itoa(i+1))
	}
	if err := os.Rename(l.path, l.path+".1"); err != nil {
		return fmt.Errorf("audit log: rotate: %w", err)
	}
	return l.open()
}

// Handler records every state-changing request h answers. A failure to
// write the log is reported (at most once a minute) but does not fail the
// request: by then it has had its effect.
func (l *Log) Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			h.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		rec := &recorder{ResponseWriter: w}
		notes := &notes{}
		r = r.WithContext(context.WithValue(r.Context(), notesKey{}, notes))
		who := Who(r)
		done := false
		defer func() {
			e := Entry{Time: start.UTC(), Who: who, Method: r.Method, Path: r.URL.Path, Route: r.Pattern,
				Resource: resource(r, notes), Status: rec.status, Ms: float64(time.Since(start).Microseconds()) / 1000}
			if !done {
				// A panic (net/http answers 500 or drops the connection).
				e.Status, e.Error = http.StatusInternalServerError, "handler panicked"
			} else if e.Status == 0 {
				e.Status = http.StatusOK
			}
			if e.Status >= 400 && e.Error == "" {
				e.Error = errorOf(rec.body.Bytes())
			}
			if err := l.Write(e); err != nil {
				l.complain(err)
			}
		}()
		h.ServeHTTP(rec, r)
		done = true
	})
}

func (l *Log) complain(err error) {
	l.mu.Lock()
	now := time.Now()
	quiet := now.Sub(l.warn) < time.Minute
	if !quiet {
		l.warn = now
	}
	l.mu.Unlock()
	if !quiet {
		slog.Error("audit log write failed", "path", l.path, "err", err)
	}
}

// resource lists the matched pattern's wildcards and their values. The
// mux sets them on the request it was given, so they are there once the
// handler returns.
func resource(r *http.Request, n *notes) map[string]string {
	n.mu.Lock()
	m := n.m
	n.mu.Unlock()
	p := r.Pattern
	for {
		i := strings.IndexByte(p, '{')
		if i < 0 {
			return m
		}
		j := strings.IndexByte(p[i:], '}')
		if j < 0 {
			return m
		}
		name := strings.TrimSuffix(p[i+1:i+j], "...")
		p = p[i+j+1:]
		if name == "$" || name == "" {
			continue
		}
		if v := r.PathValue(name); v != "" {
			if m == nil {
				m = map[string]string{}
			}
			m[name] = v
		}
	}
}

type (
	notesKey struct{}
	notes    struct {
		mu sync.Mutex
		m  map[string]string
	}
)

// Note adds to the audit entry of the request whose context ctx is what
// the request is about when the path does not say it (a container created
// by POST /v1/containers is named in the body). Without an audit log it
// does nothing.
func Note(ctx context.Context, key, value string) {
	n, ok := ctx.Value(notesKey{}).(*notes)
	if !ok {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		n.m = map[string]string{}
	}
	n.m[key] = value
}

// errorOf takes the error message of a failed answer: the "error" of a
// JSON body, both APIs' convention, else the start of the text.
func errorOf(body []byte) string {
	var v struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &v) == nil && v.Error != "" {
		return v.Error
	}
	s := strings.TrimSpace(string(bytes.ToValidUTF8(body, nil)))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// recorder keeps the status and the start of a failed answer's body.
type recorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if r.status >= 400 && r.body.Len() < errBodyMax {
		r.body.Write(p[:min(len(p), errBodyMax-r.body.Len())])
	}
	return r.ResponseWriter.Write(p)
}

// Flush and Unwrap keep streaming answers and http.ResponseController
// (deadlines, flushes) working through the recorder.
func (r *recorder) Flush() { _ = http.NewResponseController(r.ResponseWriter).Flush() }

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
