package soakbench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/containerflow/containerflow/internal/metrics"
	"github.com/containerflow/containerflow/internal/workload/stream"
)

// Outcomes, as the clients and the agents see the container afterwards
// (not as the record says: a mismatch is reported on its own).
const (
	OutcomeSuccess    = "success"     // running on the destination, every connection streaming
	OutcomeRolledBack = "rolled_back" // running on the source, every connection streaming
	OutcomeLost       = "lost"        // on neither host, or not serving: replaced
)

// Drop is one connection that broke.
type Drop struct {
	Container   string `json:"container"`
	Conn        int    `json:"conn"`
	Err         string `json:"error"`
	Unavoidable bool   `json:"unavoidable"`
	Why         string `json:"why"`
}

// Event is one migration.
type Event struct {
	N             int     `json:"n"`
	Container     string  `json:"container"`
	From          string  `json:"from"`
	To            string  `json:"to"`
	Fault         *Fault  `json:"fault,omitempty"`
	Status        string  `json:"record_status,omitempty"` // the timing record's, "" without one
	Outcome       string  `json:"outcome"`
	LostWhy       string  `json:"lost_why,omitempty"`
	Mismatch      string  `json:"mismatch,omitempty"`
	Error         string  `json:"error,omitempty"`
	TimeToReadyMs float64 `json:"time_to_ready_ms,omitempty"`
	TotalMs       float64 `json:"total_ms"`
	// RecoverMs: from the answer (and the testbed's repair) until the
	// container was found serving, or given up on.
	RecoverMs float64 `json:"recover_ms"`
	Drops     []Drop  `json:"drops,omitempty"`
	Replaced  string  `json:"replaced_by,omitempty"`
}

// Tally counts the outcomes of one fault kind ("none": no fault).
type Tally struct {
	Migrations int `json:"migrations"`
	Fired      int `json:"fired"`
	Success    int `json:"success"`
	RolledBack int `json:"rolled_back"`
	Lost       int `json:"lost"`
	Drops      int `json:"drops"`
}

// Result is the soak's JSON.
type Result struct {
	Options struct {
		Migrations  int      `json:"migrations"`
		FaultRate   float64  `json:"fault_rate"`
		Seed        int64    `json:"seed"`
		Faults      []string `json:"faults"`
		Connections int      `json:"connections"`
		Interval    string   `json:"interval"`
		Settle      string   `json:"settle"`
		Workload    string   `json:"workload"`
	} `json:"options"`
	DurationS  float64 `json:"duration_s"`
	Migrations int     `json:"migrations"`
	Success    int     `json:"success"`
	RolledBack int     `json:"rolled_back"`
	Lost       int     `json:"lost"`
	Mismatches int     `json:"record_mismatches"`
	// Containers counts the workload containers run: 1 + replacements.
	Containers int               `json:"containers"`
	ByFault    map[string]*Tally `json:"by_fault"`
	// TimeToReadyMs of the successful migrations.
	TimeToReadyMs metrics.Dist `json:"time_to_ready_ms"`

	BytesSent       uint64 `json:"bytes_sent"`
	BytesLost       uint64 `json:"bytes_lost"`
	BytesDuplicated uint64 `json:"bytes_duplicated"`
	RecordsReorder  uint64 `json:"records_reordered"`
	// InFlightAtDrop: client records never echoed because their
	// connection broke (not lost bytes: TCP never acknowledged them as
	// delivered to the application that died).
	InFlightAtDrop   uint64 `json:"bytes_in_flight_at_drop"`
	Drops            int    `json:"connection_drops"`
	UnexplainedDrops int    `json:"unexplained_drops"`

	Bounds    Bounds      `json:"bounds"`
	Procs     []Proc      `json:"process_samples"`
	ProcDrift []ProcDrift `json:"process_drift"`
	HostStart Host        `json:"host_start"`
	HostEnd   Host        `json:"host_end"`
	HostDrift HostDrift   `json:"host_drift"`
	AfterDown []string    `json:"left_after_down,omitempty"`

	Events   []Event  `json:"events"`
	Pass     bool     `json:"pass"`
	Verdicts []string `json:"verdicts,omitempty"`

	ready []float64
}

func newResult(o Options) *Result {
	r := &Result{ByFault: map[string]*Tally{}}
	r.Options.Migrations, r.Options.FaultRate, r.Options.Seed = o.Migrations, o.FaultRate, o.Seed
	r.Options.Faults, r.Options.Connections = o.Faults, o.Connections
	r.Options.Interval, r.Options.Settle, r.Options.Workload = o.Interval.String(), o.Settle.String(), "stream"
	r.Bounds = o.Bounds
	return r
}

func (r *Result) add(ev Event) {
	r.Events = append(r.Events, ev)
	r.Migrations++
	k := "none"
	if ev.Fault != nil {
		k = ev.Fault.Kind
	}
	t := r.ByFault[k]
	if t == nil {
		t = &Tally{}
		r.ByFault[k] = t
	}
	t.Migrations++
	if ev.Fault != nil && ev.Fault.Fired {
		t.Fired++
	}
	switch ev.Outcome {
	case OutcomeSuccess:
		r.Success++
		t.Success++
		if ev.TimeToReadyMs > 0 {
			r.ready = append(r.ready, ev.TimeToReadyMs)
		}
	case OutcomeRolledBack:
		r.RolledBack++
		t.RolledBack++
	default:
		r.Lost++
		t.Lost++
	}
	if ev.Mismatch != "" {
		r.Mismatches++
	}
	t.Drops += len(ev.Drops)
	for _, d := range ev.Drops {
		r.Drops++
		if !d.Unavoidable {
			r.UnexplainedDrops++
		}
	}
}

func (r *Result) addConn(st stream.ConnStats) {
	r.BytesSent += st.Sent * stream.RecordSize
	r.BytesLost += (st.Echo.Lost + st.Server.Lost) * stream.RecordSize
	r.BytesDuplicated += (st.Echo.Duplicated + st.Server.Duplicated) * stream.RecordSize
	r.RecordsReorder += st.Echo.Reordered + st.Server.Reordered
	if st.Dropped {
		r.InFlightAtDrop += st.Unanswered() * stream.RecordSize
	} else {
		// A connection that stayed up owes every echo.
		r.BytesLost += st.Unanswered() * stream.RecordSize
	}
}

func (r *Result) summarize(b Bounds) {
	r.TimeToReadyMs = metrics.Summarize(r.ready)
	r.ProcDrift = procDrift(r.Procs, b)
	r.HostDrift = diffHost(r.HostStart, r.HostEnd)
	r.Pass = true
	fail := func(f string, a ...any) { r.Pass = false; r.Verdicts = append(r.Verdicts, fmt.Sprintf(f, a...)) }
	if r.BytesLost > 0 || r.BytesDuplicated > 0 {
		fail("%d bytes lost, %d duplicated", r.BytesLost, r.BytesDuplicated)
	}
	if r.UnexplainedDrops > 0 {
		fail("%d connection drops no fault explains", r.UnexplainedDrops)
	}
	if r.Mismatches > 0 {
		fail("%d migrations whose record disagrees with where the container is", r.Mismatches)
	}
	for _, ev := range r.Events {
		if f := ev.Fault; f != nil && f.Error != "" {
			fail("migration %d: fault %s not injected: %s", ev.N, f.Kind, f.Error)
		}
		if ev.Outcome == OutcomeLost {
			if ok, why := explain(ev.Outcome, ev.Fault); !ok {
				fail("migration %d: container lost: %s (%s)", ev.N, ev.LostWhy, why)
			}
		}
	}
	for _, d := range r.ProcDrift {
		if !d.WithinBound {
			fail("%s (pid %d, migrations %d..%d): %s", d.Role, d.PID, d.FromN, d.ToN, strings.Join(d.Exceeded, ", "))
		}
	}
	if !r.HostDrift.Empty() {
		var parts []string
		for k, v := range r.HostDrift.Added {
			parts = append(parts, fmt.Sprintf("+%d %s %v", len(v), k, v))
		}
		for k, v := range r.HostDrift.Removed {
			parts = append(parts, fmt.Sprintf("-%d %s %v", len(v), k, v))
		}
		sort.Strings(parts)
		fail("host drift after the last container was removed: %s", strings.Join(parts, "; "))
	}
}

// WriteJSON writes the result.
func (r *Result) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Print writes the summary.
func (r *Result) Print(w io.Writer) {
	fmt.Fprintf(w, "\nsoak: %d migrations in %.0f s (faults %.0f%%, seed %d): %d success, %d rolled back, %d lost (%d containers run)\n",
		r.Migrations, r.DurationS, r.Options.FaultRate*100, r.Options.Seed, r.Success, r.RolledBack, r.Lost, r.Containers)
	fmt.Fprintf(w, "%-18s %5s %5s %7s %11s %5s %5s\n", "fault", "migr", "fired", "success", "rolled_back", "lost", "drops")
	keys := make([]string, 0, len(r.ByFault))
	for k := range r.ByFault {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t := r.ByFault[k]
		fmt.Fprintf(w, "%-18s %5d %5d %7d %11d %5d %5d\n", k, t.Migrations, t.Fired, t.Success, t.RolledBack, t.Lost, t.Drops)
	}
	fmt.Fprintf(w, "bytes: %d sent, %d lost, %d duplicated (%d reordered records, %d bytes in flight at a drop)\n",
		r.BytesSent, r.BytesLost, r.BytesDuplicated, r.RecordsReorder, r.InFlightAtDrop)
	fmt.Fprintf(w, "connection drops: %d, unexplained %d\n", r.Drops, r.UnexplainedDrops)
	if r.TimeToReadyMs.N > 0 {
		fmt.Fprintf(w, "time to ready (successes): p50 %.1f ms, p99 %.1f ms\n", r.TimeToReadyMs.P50, r.TimeToReadyMs.P99)
	}
	for _, d := range r.ProcDrift {
		note := "within bound"
		if d.NotJudged != "" {
			note = "not judged: " + d.NotJudged
		} else if !d.WithinBound {
			note = "EXCEEDED: " + strings.Join(d.Exceeded, ", ")
		}
		fmt.Fprintf(w, "%-12s %d lives; pid %d over migrations %d..%d: rss %d -> %d KiB, fds %d -> %d, threads %d -> %d, goroutines %d -> %d: %s\n",
			d.Role, d.Lives, d.PID, d.FromN, d.ToN, d.RSSKiB[0], d.RSSKiB[1], d.FDs[0], d.FDs[1], d.Threads[0], d.Threads[1], d.Goroutines[0], d.Goroutines[1], note)
	}
	if r.HostDrift.Empty() {
		fmt.Fprintf(w, "host: no drift (mounts %d, cgroups %d, nftables %d, netns %d, pins %d, run files %d, shm files %d, temp %d at both ends; logs %d files, %d bytes at the end)\n",
			len(r.HostEnd.Mounts), len(r.HostEnd.Cgroups), len(r.HostEnd.Nftables), len(r.HostEnd.Netns), len(r.HostEnd.BPFPins),
			len(r.HostEnd.RunFiles), len(r.HostEnd.ShmFiles), len(r.HostEnd.TempFiles), r.HostEnd.Logs, r.HostEnd.LogBytes)
	}
	if r.Pass {
		fmt.Fprintln(w, "PASS")
	} else {
		fmt.Fprintln(w, "FAIL:")
		for _, v := range r.Verdicts {
			fmt.Fprintln(w, "  "+v)
		}
	}
}
