package ws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Config configures a Server. Zero values take the seed's defaults.
type Config struct {
	FPS            int           // data frames per second per client (30)
	PaddingBytes   int           // padding in each frame (512)
	StalePing      time.Duration // pings older than this are not echoed (1 s)
	MaxWriteErrors int           // consecutive write errors before giving a client up (30)
	EchoQueue      int           // echoes waiting for the writer (64)
	WriteTimeout   time.Duration // bound on one write (5 s)
	Log            *slog.Logger
}

func (c *Config) defaults() {
	if c.FPS <= 0 {
		c.FPS = 30
	}
	if c.PaddingBytes <= 0 {
		c.PaddingBytes = 512
	}
	if c.StalePing <= 0 {
		c.StalePing = time.Second
	}
	if c.MaxWriteErrors <= 0 {
		c.MaxWriteErrors = 30
	}
	if c.EchoQueue <= 0 {
		c.EchoQueue = 64
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 5 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Server is the workload server. Create it with New.
type Server struct {
	cfg     Config
	padding string
	start   time.Time
	cpu     *cpuSampler

	quiesced  atomic.Bool
	connected atomic.Int64
	total     atomic.Int64
	bytesSent atomic.Uint64
	bytesRecv atomic.Uint64
	frames    atomic.Uint64
	echoes    atomic.Uint64
	stale     atomic.Uint64 // pings too old to echo
	skipped   atomic.Uint64 // pings not echoed while quiesced
	overflow  atomic.Uint64 // echoes dropped because the queue was full
	gaveUp    atomic.Uint64 // clients dropped after MaxWriteErrors
}

// New returns a server; Serve or the handlers run it.
func New(cfg Config) *Server {
	cfg.defaults()
	return &Server{cfg: cfg, padding: strings.Repeat("x", cfg.PaddingBytes), start: time.Now(), cpu: newCPUSampler()}
}

// ToggleQuiesce flips quiesce mode (the SIGUSR2 handler) and returns the
// new state.
func (s *Server) ToggleQuiesce() bool {
	for {
		old := s.quiesced.Load()
		if s.quiesced.CompareAndSwap(old, !old) {
			if !old {
				s.cfg.Log.Info("quiesced: data frames and echoes paused")
			} else {
				s.cfg.Log.Info("resumed: data frames and echoes active")
			}
			return !old
		}
	}
}

// Quiesced reports whether frames and echoes are paused.
func (s *Server) Quiesced() bool { return s.quiesced.Load() }

// Handler serves /ws and /health.
func (s *Server) Handler(ctx context.Context) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) { s.serveWS(ctx, w, r) })
	mux.HandleFunc("/health", health)
	return mux
}

func health(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprint(w, `{"status":"ok"}`)
}

func (s *Server) serveWS(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		s.cfg.Log.Warn("websocket upgrade", "remote", r.RemoteAddr, "err", err)
		return
	}
	id := s.total.Add(1)
	s.connected.Add(1)
	defer s.connected.Add(-1)
	log := s.cfg.Log.With("client", id, "remote", r.RemoteAddr)
	log.Info("client connected")

	// The connection's own context: cancelled when either side of the
	// handler gives up, which closes the socket (coder/websocket closes a
	// connection whose read or write context ends).
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Echoes go through a buffered channel so the reader never blocks on a
	// write: a full send buffer after a migration must not stop the
	// reader, or the client's pings would pile up unread.
	echoes := make(chan []byte, s.cfg.EchoQueue)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		defer cancel()
		s.writeLoop(cctx, c, echoes, log)
	}()

	for {
		_, data, err := c.Read(cctx)
		if err != nil {
			if cctx.Err() == nil && websocket.CloseStatus(err) == -1 && !errors.Is(err, net.ErrClosed) {
				log.Info("client read", "err", err)
			}
			break
		}
		s.bytesRecv.Add(uint64(len(data)))
		now := time.Now()
		if s.quiesced.Load() {
			// The seed keeps reading but stays silent, so the send
			// queue can drain before the checkpoint.
			s.skipped.Add(1)
			continue
		}
		var p Ping
		if json.Unmarshal(data, &p) != nil {
			continue
		}
		// Pings that waited out a freeze would report the freeze, not the
		// network; the seed drops them and so do we.
		if p.Ts > 0 && now.Sub(time.Unix(0, p.Ts)) > s.cfg.StalePing {
			s.stale.Add(1)
			continue
		}
		b, _ := json.Marshal(Message{Type: TypeEcho, Seq: p.Seq, ClientTs: p.Ts, ServerTs: now.UnixNano()})
		select {
		case echoes <- b:
		default:
			s.overflow.Add(1)
		}
	}
	cancel()
	<-writerDone
	c.CloseNow()
	log.Info("client disconnected")
}

// writeLoop is the client's only writer: frames on a ticker, echoes as
// they come. It gives the client up after MaxWriteErrors consecutive
// failed writes, as the seed did (with coder/websocket a failed write
// closes the connection, so in practice the errors that follow come
// quickly; the limit is kept for the seed's behaviour and its logs).
func (s *Server) writeLoop(ctx context.Context, c *websocket.Conn, echoes <-chan []byte, log *slog.Logger) {
	tick := time.NewTicker(time.Second / time.Duration(s.cfg.FPS))
	defer tick.Stop()
	var seq int64
	errs := 0
	write := func(b []byte) bool {
		wctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
		err := c.Write(wctx, websocket.MessageText, b)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return false
			}
			errs++
			if errs == 1 || errs%10 == 0 {
				log.Warn("write failed", "consecutive", errs, "err", err)
			}
			if errs >= s.cfg.MaxWriteErrors {
				s.gaveUp.Add(1)
				log.Warn("giving the client up", "consecutive_errors", errs)
				return false
			}
			return true
		}
		if errs > 0 {
			log.Info("writes recovered", "after_errors", errs)
		}
		errs = 0
		s.bytesSent.Add(uint64(len(b)))
		return true
	}
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-echoes:
			if !write(b) {
				return
			}
			s.echoes.Add(1)
		case <-tick.C:
			if s.quiesced.Load() {
				continue // no frame, and no sequence number used
			}
			b, _ := json.Marshal(Message{Type: TypeFrame, Seq: seq, Ts: time.Now().UnixNano(), Size: s.cfg.PaddingBytes, Padding: s.padding})
			if !write(b) {
				return
			}
			// A frame that failed to write keeps its number for the next
			// try, so the client sees no hole it was not meant to see.
			if errs == 0 {
				seq++
				s.frames.Add(1)
			}
		}
	}
}

// ListenAndServe serves WebSockets on addr and metrics on metricsAddr
// until ctx ends.
func (s *Server) ListenAndServe(ctx context.Context, addr, metricsAddr string) error {
	wl, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("ws server listen %s: %w", addr, err)
	}
	ml, err := net.Listen("tcp", metricsAddr)
	if err != nil {
		wl.Close()
		return fmt.Errorf("ws server metrics listen %s: %w", metricsAddr, err)
	}
	s.cfg.Log.Info("ws server up", "ws", wl.Addr().String(), "metrics", ml.Addr().String(), "fps", s.cfg.FPS)
	go s.cpu.run(ctx)
	servers := []*http.Server{
		{Handler: s.Handler(ctx), ReadHeaderTimeout: 10 * time.Second},
		{Handler: s.MetricsHandler(), ReadHeaderTimeout: 10 * time.Second},
	}
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	for i, l := range []net.Listener{wl, ml} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := servers[i].Serve(l); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	for _, hs := range servers {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = hs.Shutdown(sctx)
		cancel()
	}
	wg.Wait()
	return err
}
