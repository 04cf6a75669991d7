package switchbench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/containerflow/containerflow/internal/controller"
	"github.com/containerflow/containerflow/internal/testbed"
)

// Latency is a distribution in microseconds.
type Latency struct {
	Endpoint string  `json:"endpoint"`
	Count    int64   `json:"count"`
	Mean     float64 `json:"mean"`
	P50      float64 `json:"p50"`
	P90      float64 `json:"p90"`
	P99      float64 `json:"p99"`
	P999     float64 `json:"p999"`
	Max      float64 `json:"max"`
}

func latencyOf(endpoint string, h *hdrhistogram.Histogram) Latency {
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	return Latency{Endpoint: endpoint, Count: h.TotalCount(), Mean: h.Mean() / 1e3,
		P50: us(h.ValueAtQuantile(50)), P90: us(h.ValueAtQuantile(90)), P99: us(h.ValueAtQuantile(99)),
		P999: us(h.ValueAtQuantile(99.9)), Max: us(h.Max())}
}

// benchIP is the address the latency test moves between hostA and hostB.
var benchIP = netip.MustParseAddr("198.18.0.50")

// measureUpdates times address moves through the HTTP API from hostA:
// first the seed's POST /updateForward (what the seed measured at 26-31
// ms), then POST /v1/addresses/{ip}/move (what agents use). Each request
// alternates the port; after the run the table is checked to hold the last
// move, so the answers did stand for map updates.
func measureUpdates(ctx context.Context, tb *testbed.Testbed, bc *benchController, moves int) (seed, v1 Latency, err error) {
	mac := testbed.ContainerMAC(benchIP)
	ports := []uint32{1, 2}
	seedReq := func(i int) (*http.Request, error) {
		body := fmt.Sprintf(`{"ipv4":"%s","sw_port":%d,"dst_mac":"%s"}`, benchIP, ports[i%2], mac)
		return http.NewRequestWithContext(ctx, http.MethodPost, "http://"+mgmtAddr()+"/updateForward", bytes.NewReader([]byte(body)))
	}
	v1Req := func(i int) (*http.Request, error) {
		body := fmt.Sprintf(`{"port":%d,"dst_mac":"%s"}`, ports[i%2], mac)
		return http.NewRequestWithContext(ctx, http.MethodPost, "http://"+mgmtAddr()+"/v1/addresses/"+benchIP.String()+"/move", bytes.NewReader([]byte(body)))
	}
	for _, run := range []struct {
		name string
		mk   func(int) (*http.Request, error)
		out  *Latency
	}{{"POST /updateForward", seedReq, &seed}, {"POST /v1/addresses/{ip}/move", v1Req, &v1}} {
		h := hdrhistogram.New(1, int64(10*time.Second), 3)
		warm := moves / 10
		for i := 0; i < moves+warm; i++ {
			req, err := run.mk(i)
			if err != nil {
				return seed, v1, err
			}
			req.Header.Set("Authorization", "Bearer "+bc.token)
			req.Header.Set("Content-Type", "application/json")
			start := time.Now()
			resp, err := bc.hc.Do(req)
			if err != nil {
				return seed, v1, fmt.Errorf("%s: %w", run.name, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			d := time.Since(start)
			if resp.StatusCode != http.StatusOK {
				return seed, v1, fmt.Errorf("%s: HTTP %d", run.name, resp.StatusCode)
			}
			if i >= warm {
				_ = h.RecordValue(d.Nanoseconds())
			}
		}
		last := ports[(moves+warm-1)%2]
		e, err := bc.ctl.Dataplane().Address(benchIP)
		if err != nil || e.Forward == nil || e.Forward.Port != last || e.ARP == nil || e.ARP.Port != last {
			return seed, v1, fmt.Errorf("%s: table does not hold the last move (port %d): %+v, %v", run.name, last, e, err)
		}
		*run.out = latencyOf(run.name, h)
	}
	// Leave the table as found.
	if err := bc.client.Batch(ctx, controller.Op{Op: "delete_address", IP: benchIP.String()}); err != nil {
		return seed, v1, err
	}
	return seed, v1, nil
}

func mgmtAddr() string {
	return net.JoinHostPort(testbed.SwitchMgmtIP.String(), fmt.Sprint(testbed.ControllerPort))
}
