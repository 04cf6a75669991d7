package agent

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerflow/containerflow/internal/audit"
	"github.com/containerflow/containerflow/internal/httpserve"
	"github.com/containerflow/containerflow/internal/migration"
)

// StreamIdleTimeout cuts an image stream or upload whose sender has sent
// nothing for that long. Generous: a source may pause its stream while
// CRIU dumps a large memory area it has not written yet.
const StreamIdleTimeout = 2 * time.Minute

// MaxImageUpload bounds POST /v1/images: larger archives are refused with
// 413 rather than filling the state dir (the largest common images, CUDA
// bases, are about 10 GiB).
const MaxImageUpload int64 = 16 << 30

// Handler returns the agent's HTTP API.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		// Goroutines let a long run (cflow bench soak) see a leak from
		// outside the process.
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "host": a.cfg.Name, "goroutines": runtime.NumGoroutine()})
	})
	mux.HandleFunc("GET /v1/host", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.hostStats())
	})
	// A read like GET /v1/host: over TLS any certificate of the CA, on the
	// unix socket root (docs/metrics.md, docs/security.md).
	mux.Handle("GET /metrics", a.metrics.handler())
	mux.HandleFunc("GET /v1/containers", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.List())
	})
	mux.HandleFunc("GET /v1/containers/{name}", func(w http.ResponseWriter, r *http.Request) {
		c, err := a.Get(r.PathValue("name"))
		reply(w, c, err)
	})
	a.logRoutes(mux) // logs.go
	mux.Handle("POST /v1/containers", a.auth(a.user(func(w http.ResponseWriter, r *http.Request) {
		var s ContainerSpec
		if !decode(w, r, &s) {
			return
		}
		audit.Note(r.Context(), "name", s.Name)
		c, err := a.Run(r.Context(), s)
		if err == nil {
			writeJSON(w, http.StatusCreated, c)
			return
		}
		writeErr(w, err)
	})))
	mux.Handle("DELETE /v1/containers/{name}", a.auth(a.user(func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]string{"deleted": r.PathValue("name")}, a.Remove(r.Context(), r.PathValue("name")))
	})))
	mux.Handle("POST /v1/containers/{name}/signal", a.auth(a.user(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Signal int `json:"signal"`
		}
		if !decode(w, r, &req) {
			return
		}
		if req.Signal <= 0 || req.Signal > 64 {
			writeErr(w, fmt.Errorf("%w: signal must be 1-64", ErrBadRequest))
			return
		}
		reply(w, map[string]int{"sent": req.Signal}, a.Signal(r.Context(), r.PathValue("name"), syscall.Signal(req.Signal)))
	})))
	mux.Handle("POST /v1/containers/{name}/migrate", a.auth(a.user(func(w http.ResponseWriter, r *http.Request) {
		var req MigrateRequest
		if !decode(w, r, &req) {
			return
		}
		audit.Note(r.Context(), "to", req.To)
		rec, err := a.Migrate(r.Context(), r.PathValue("name"), req)
		if rec == nil {
			writeErr(w, err)
			return
		}
		status := http.StatusOK
		if err != nil && rec.Status != "success" {
			status = http.StatusInternalServerError
		}
		var ce *CapacityError
		if errors.As(err, &ce) {
			// The record, and why: the destination had no room.
			writeJSON(w, http.StatusConflict, struct {
				*migration.Record
				Reason  string         `json:"reason"`
				Refused *CapacityError `json:"refused"`
			}{rec, ReasonCapacity, ce})
			return
		}
		writeJSON(w, status, rec)
	})))
	mux.Handle("POST /v1/containers/{name}/reference", a.auth(a.user(func(w http.ResponseWriter, r *http.Request) {
		ref, err := a.Reference(r.Context(), r.PathValue("name"))
		reply(w, ref, err)
	})))
	// Destination side of a migration, called by the source agent.
	mux.Handle("POST /v1/migrations", a.auth(func(w http.ResponseWriter, r *http.Request) {
		var req PrepareRequest
		if !decode(w, r, &req) {
			return
		}
		// Only a host may send its own containers here.
		if err := a.allowPeerHost(r, req.From, "start a migration from "+req.From); err != nil {
			writeErr(w, err)
			return
		}
		audit.Note(r.Context(), "name", req.Spec.Name)
		audit.Note(r.Context(), "from", req.From)
		// A post-copy source serves its pages on the address it calls from.
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		plain := r.TLS == nil && a.cfg.PlainPeers[req.From] != "" && !isUnix(r)
		reply(w, map[string]string{"staged": req.Spec.Name}, a.prepareIncoming(r.Context(), req, host, plain))
	}))
	mux.Handle("POST /v1/migrations/{name}/images", a.auth(a.fromSource(func(w http.ResponseWriter, r *http.Request) {
		// Not bounded in size: it is the container's memory and writable
		// layer, which the destination cannot know ahead; the images dir
		// (a tmpfs) bounds it. A source that stalls is cut instead.
		httpserve.IdleBody(w, r, StreamIdleTimeout)
		rep, err := a.receiveAndRestore(r.Context(), r.PathValue("name"), r.Body)
		if err != nil && rep.Switched {
			// The source must know the address moved here before the
			// failure, to point it back before rolling back.
			writeJSON(w, http.StatusInternalServerError, map[string]any{"error": err.Error(), "switched": true})
			return
		}
		reply(w, rep, err)
	})))
	mux.Handle("GET /v1/migrations/{name}/outcome", a.auth(a.fromSource(func(w http.ResponseWriter, r *http.Request) {
		o, err := a.outcomeOf(r.Context(), r.PathValue("name"))
		reply(w, o, err)
	})))
	// Called by the go-live hook CRIU runs inside a restore; authenticated
	// by the migration's one-time nonce, not the bearer token.
	mux.HandleFunc("POST /v1/migrations/{name}/hook", func(w http.ResponseWriter, r *http.Request) {
		var req hookRequest
		if !decode(w, r, &req) {
			return
		}
		reply(w, map[string]string{"live": r.PathValue("name")}, a.goLive(r.Context(), r.PathValue("name"), req.Nonce))
	})
	mux.Handle("POST /v1/migrations/{name}/handoff", a.auth(a.toDestination(a.serveHandoff)))
	mux.Handle("POST /v1/migrations/{name}/settle", a.auth(a.settleFrom(func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]string{"settled": r.PathValue("name")}, a.settleIncoming(r.Context(), r.PathValue("name")))
	})))
	mux.Handle("POST /v1/migrations/{name}/commit", a.auth(a.fromSource(func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]string{"committed": r.PathValue("name")}, a.commitIncoming(r.Context(), r.PathValue("name")))
	})))
	mux.Handle("POST /v1/migrations/{name}/abort", a.auth(a.fromSource(func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]string{"aborted": r.PathValue("name")}, a.abortIncoming(r.Context(), r.PathValue("name")))
	})))
	a.imageRoutes(mux)
	return mux
}

func (a *Agent) auth(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.cfg.Token != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(a.cfg.Token)) != 1 {
				writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong bearer token"})
				return
			}
		}
		h(w, r)
	})
}

// HostStats is what GET /v1/host reports. CPUs, LoadAvg and Mem* are the
// machine's; Capacity to UsageAt are this host's share and its containers'
// (capacity.go, usage.go).
type HostStats struct {
	Host        string     `json:"host"`
	Containers  int        `json:"containers"`
	CPUs        int        `json:"cpus"`
	LoadAvg     [3]float64 `json:"load_avg"`
	MemTotalMB  float64    `json:"mem_total_mb"`
	MemAvailMB  float64    `json:"mem_available_mb"`
	ImagesDir   string     `json:"images_dir"`
	Time        time.Time  `json:"time"`
	AgentGoVers string     `json:"agent_go_version"`

	// Capacity is what the host offers its containers' requests.
	Capacity Amount `json:"capacity"`
	// Requested sums the requests of the containers that hold capacity
	// (running, migrating, incoming, and exited ones about to restart).
	Requested Amount `json:"requested"`
	// Free is Capacity less Requested: what the next container may
	// request. Negative when the capacity was lowered under containers
	// already there (they are not evicted).
	Free Amount `json:"free"`
	// Used sums what the running containers used at the last sample
	// (UsageAt), every UsageIntervalS seconds.
	Used           Amount    `json:"used"`
	UsageAt        time.Time `json:"usage_at"`
	UsageIntervalS float64   `json:"usage_interval_s"`
}

func (a *Agent) hostStats() HostStats {
	st := HostStats{Host: a.cfg.Name, Containers: len(a.List()), CPUs: runtime.NumCPU(), ImagesDir: a.cfg.ImagesDir, Time: time.Now().UTC(), AgentGoVers: runtime.Version()}
	a.mu.Lock()
	reqMilli, reqMem := a.requestedLocked()
	a.mu.Unlock()
	st.Capacity, st.Requested = a.cfg.Capacity, fromMilli(reqMilli, reqMem)
	st.Free = fromMilli(milliCPUs(a.cfg.Capacity.CPUs)-reqMilli, a.cfg.Capacity.MemoryBytes-reqMem)
	st.Used, st.UsageAt = a.used()
	st.UsageIntervalS = a.cfg.UsageInterval.Seconds()
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		for i := 0; i < 3 && i < len(f); i++ {
			st.LoadAvg[i], _ = strconv.ParseFloat(f[i], 64)
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			kb, _ := strconv.ParseFloat(f[1], 64)
			switch f[0] {
			case "MemTotal:":
				st.MemTotalMB = kb / 1024
			case "MemAvailable:":
				st.MemAvailMB = kb / 1024
			}
		}
	}
	return st
}

// decode reads a JSON request body into v. The body is bounded in size
// and time (httpserve.JSONBody): one too large is refused with 413, not
// cut and then misread.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	httpserve.JSONBody(w, r)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		// Trailing data would be silently ignored otherwise.
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("data after the JSON object")
			if httpserve.IsTooLarge(terr) {
				err = terr
			}
		}
	}
	if err != nil {
		if httpserve.IsTooLarge(err) {
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": fmt.Sprintf("JSON body larger than %d bytes", httpserve.JSONLimit)})
			return false
		}
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "malformed JSON body: " + err.Error()})
		return false
	}
	return true
}

func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func writeErr(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrBadRequest):
		code = http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, ErrConflict):
		code = http.StatusConflict
	case errors.Is(err, ErrForbidden):
		code = http.StatusForbidden
	}
	var ce *CapacityError
	if errors.As(err, &ce) {
		writeJSON(w, code, map[string]any{"error": err.Error(), "reason": ReasonCapacity, "refused": ce})
		return
	}
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
