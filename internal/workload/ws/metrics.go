package ws

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"time"
)

// Metrics is the server's /metrics answer. The first seven fields are the
// seed's, with the seed's names, so its collector reads ours unchanged.
type Metrics struct {
	ConnectedClients int64   `json:"connected_clients"`
	TotalClients     int64   `json:"total_clients"`
	UptimeSeconds    float64 `json:"uptime_seconds"`
	BytesSent        uint64  `json:"bytes_sent"`
	BytesReceived    uint64  `json:"bytes_received"`
	CPUPercent       float64 `json:"cpu_percent"`
	MemoryMB         float64 `json:"memory_mb"` // Go runtime's Sys, as the seed

	RSSMB          float64 `json:"rss_mb"`
	FramesSent     uint64  `json:"frames_sent"`
	EchoesSent     uint64  `json:"echoes_sent"`
	PingsStale     uint64  `json:"pings_stale"`
	PingsQuiesced  uint64  `json:"pings_quiesced"`
	EchoesDropped  uint64  `json:"echoes_dropped"`
	ClientsGivenUp uint64  `json:"clients_given_up"`
	Quiesced       bool    `json:"quiesced"`
	FPS            int     `json:"fps"`
}

// Snapshot reads the current metrics.
func (s *Server) Snapshot() Metrics {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return Metrics{
		ConnectedClients: s.connected.Load(),
		TotalClients:     s.total.Load(),
		UptimeSeconds:    time.Since(s.start).Seconds(),
		BytesSent:        s.bytesSent.Load(),
		BytesReceived:    s.bytesRecv.Load(),
		CPUPercent:       s.cpu.percent(),
		MemoryMB:         float64(ms.Sys) / (1 << 20),
		RSSMB:            rssMB(),
		FramesSent:       s.frames.Load(),
		EchoesSent:       s.echoes.Load(),
		PingsStale:       s.stale.Load(),
		PingsQuiesced:    s.skipped.Load(),
		EchoesDropped:    s.overflow.Load(),
		ClientsGivenUp:   s.gaveUp.Load(),
		Quiesced:         s.quiesced.Load(),
		FPS:              s.cfg.FPS,
	}
}

// MetricsHandler serves /metrics (JSON, or Prometheus text when asked
// with ?format=prometheus or an Accept header that prefers text/plain or
// OpenMetrics, as Prometheus' scraper sends) and /health.
func (s *Server) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		m := s.Snapshot()
		if wantsPrometheus(r) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
			m.WritePrometheus(w)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(m)
	})
	mux.HandleFunc("/health", health)
	return mux
}

func wantsPrometheus(r *http.Request) bool {
	switch r.URL.Query().Get("format") {
	case "prometheus", "text":
		return true
	case "json":
		return false
	}
	acc := r.Header.Get("Accept")
	if strings.Contains(acc, "application/json") {
		return false
	}
	return strings.Contains(acc, "text/plain") || strings.Contains(acc, "openmetrics")
}

// WritePrometheus writes m in the Prometheus text exposition format.
func (m Metrics) WritePrometheus(w io.Writer) {
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for _, x := range []struct {
		name, typ, help string
		v               float64
	}{
		{"wsserver_connected_clients", "gauge", "WebSocket clients connected now.", float64(m.ConnectedClients)},
		{"wsserver_clients_total", "counter", "WebSocket clients ever connected.", float64(m.TotalClients)},
		{"wsserver_uptime_seconds", "gauge", "Time since the server started (it continues across migrations).", m.UptimeSeconds},
		{"wsserver_sent_bytes_total", "counter", "Payload bytes written to clients.", float64(m.BytesSent)},
		{"wsserver_received_bytes_total", "counter", "Payload bytes read from clients.", float64(m.BytesReceived)},
		{"wsserver_cpu_percent", "gauge", "CPU used by the server over the last second, in percent of one core.", m.CPUPercent},
		{"wsserver_memory_bytes", "gauge", "Memory obtained from the OS by the Go runtime.", m.MemoryMB * (1 << 20)},
		{"wsserver_resident_memory_bytes", "gauge", "Resident set size.", m.RSSMB * (1 << 20)},
		{"wsserver_frames_sent_total", "counter", "Data frames sent.", float64(m.FramesSent)},
		{"wsserver_echoes_sent_total", "counter", "Ping echoes sent.", float64(m.EchoesSent)},
		{"wsserver_pings_stale_total", "counter", "Pings dropped because they were older than the stale limit.", float64(m.PingsStale)},
		{"wsserver_pings_quiesced_total", "counter", "Pings not echoed because the server was quiesced.", float64(m.PingsQuiesced)},
		{"wsserver_echoes_dropped_total", "counter", "Echoes dropped because the echo queue was full.", float64(m.EchoesDropped)},
		{"wsserver_clients_given_up_total", "counter", "Clients dropped after too many consecutive write errors.", float64(m.ClientsGivenUp)},
		{"wsserver_quiesced", "gauge", "1 while frames and echoes are paused (SIGUSR2).", b2f(m.Quiesced)},
		{"wsserver_fps", "gauge", "Configured data frames per second per client.", float64(m.FPS)},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %g\n", x.name, x.help, x.name, x.typ, x.name, x.v)
	}
}
