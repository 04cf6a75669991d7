package agent

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/containerflow/containerflow/internal/migration/transfer"
)

// FuzzRequestDecoding runs the agent's request decoding and the checks
// that follow it before anything is made — the container spec of POST
// /v1/containers and of a migration's prepare (validate), the migrate
// request (engine, compression), the signal and hook requests — on
// arbitrary bodies. An Agent with only its configuration is enough: these
// steps touch no namespace, runtime or CRIU, so the fuzzer needs no
// testbed. Nothing may panic, an answer is 400 or 413, and a spec that
// passes validate must name a container the rest of the agent can place:
// a name that stays one path component.
func FuzzRequestDecoding(f *testing.F) {
	a := &Agent{cfg: Config{Name: "fz", StateDir: f.TempDir(), NetnsPrefix: "fz-", BinDir: "/usr/bin"}}
	spec := ContainerSpec{Name: "web", Args: []string{"/bin/sh", "-c", "sleep 1"}, Env: []string{"A=1"}, Cwd: "/tmp"}
	spec.IP.UnmarshalText([]byte("198.18.0.2")) //nolint:errcheck // a constant
	b, _ := json.Marshal(spec)
	f.Add(uint8(0), b)
	pb, _ := json.Marshal(PrepareRequest{Spec: spec, From: "hostA", Engine: "direct", PageServerPort: 4000, Compress: "zstd"})
	f.Add(uint8(1), pb)
	mb, _ := json.Marshal(MigrateRequest{To: "hostB", QuiesceSignal: 12, Mode: "post-copy", Compress: "zstd", Engine: "runc"})
	f.Add(uint8(2), mb)
	f.Add(uint8(3), []byte(`{"signal": 15}`))
	f.Add(uint8(4), []byte(`{"nonce": "abc"}`))
	f.Add(uint8(0), []byte(`{"name":"../../etc","ip":"198.18.0.9","args":["x"],"volumes":[{"source":"/","target":"/host"}],"rlimits":[{"type":"nofile","soft":1,"hard":0}]} trailing`))
	f.Add(uint8(0), []byte(`{"name":"a","ip":"::1","mac":"ff:ff:ff:ff:ff:ff","args":[""],"resources":{"memory":-1}}`))

	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/v1/x", bytes.NewReader(body))
		var s *ContainerSpec
		switch kind % 5 {
		case 0:
			var v ContainerSpec
			if !decode(w, r, &v) {
				break
			}
			s = &v
		case 1:
			var v PrepareRequest
			if !decode(w, r, &v) {
				break
			}
			s = &v.Spec
			_, _ = engine(v.Engine)
			_ = transfer.CheckCompression(v.Compress)
		case 2:
			var v MigrateRequest
			if decode(w, r, &v) {
				_, _ = engine(v.Engine)
				_ = transfer.CheckCompression(v.Compress)
			}
		case 3:
			var v struct {
				Signal int `json:"signal"`
			}
			decode(w, r, &v)
		case 4:
			var v hookRequest
			decode(w, r, &v)
		}
		if w.Code != http.StatusOK && w.Code != http.StatusBadRequest && w.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("decode answered %d", w.Code)
		}
		if s == nil {
			return
		}
		if err := a.validate(s); err != nil {
			return
		}
		if s.Name == "" || strings.ContainsAny(s.Name, "/\x00") || s.Name == "." || s.Name == ".." {
			t.Fatalf("validate accepted the name %q", s.Name)
		}
		if !s.IP.Is4() || len(s.MAC) != 6 {
			t.Fatalf("validate accepted ip %v mac %v", s.IP, s.MAC)
		}
	})
}
