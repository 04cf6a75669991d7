package migration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Record is the timing record of one migration. Field tags carry the
// seed's timing-file keys, so WriteKV produces a file its plotting scripts
// read unchanged.
type Record struct {
	Container   string `json:"container" kv:"container"`
	SourceNode  string `json:"source_node" kv:"source_node"`
	TargetNode  string `json:"target_node" kv:"target_node"`
	Status      string `json:"status" kv:"status"`           // success, rolled_back, failed
	Engine      string `json:"engine,omitempty" kv:"engine"` // direct or runc
	Mode        string `json:"mode,omitempty" kv:"mode"`     // stop-and-copy or post-copy
	Error       string `json:"error,omitempty" kv:"error"`
	CheckpointB int64  `json:"checkpoint_size_bytes" kv:"checkpoint_size_bytes"`
	// SwitchedBy says who pointed the switch at the destination:
	// "destination" (its go-live hook, inside the restore) or "source".
	SwitchedBy string `json:"switched_by,omitempty" kv:"switched_by"`
	// HandoffFrames counts the clients' frames caught on the source during
	// the freeze and sent on to the destination once it was live.
	HandoffFrames int64 `json:"handoff_frames" kv:"handoff_frames"`
	// HandoffDatagrams of those were UDP datagrams held in the source's
	// namespace from the freeze on; HandoffDatagramsLost were held beyond
	// the hold's bound and are gone (see handoff/udp.go).
	HandoffDatagrams     int64 `json:"handoff_datagrams,omitempty" kv:"handoff_datagrams"`
	HandoffDatagramsLost int64 `json:"handoff_datagrams_lost,omitempty" kv:"handoff_datagrams_lost"`

	MigrationStartNs  int64 `json:"migration_start_ns" kv:"migration_start_ns"`
	PrepareDoneNs     int64 `json:"prepare_done_ns" kv:"prepare_done_ns"`
	QuiesceDoneNs     int64 `json:"quiesce_done_ns" kv:"quiesce_done_ns"`
	CheckpointStartNs int64 `json:"checkpoint_start_ns" kv:"checkpoint_start_ns"`
	CheckpointDoneNs  int64 `json:"checkpoint_done_ns" kv:"checkpoint_done_ns"`
	TransferDoneNs    int64 `json:"transfer_done_ns" kv:"transfer_done_ns"`
	RestoreDoneNs     int64 `json:"restore_done_ns" kv:"restore_done_ns"`
	SwitchDoneNs      int64 `json:"switch_done_ns" kv:"switch_done_ns"`
	ReadyNs           int64 `json:"ready_ns" kv:"ready_ns"`
	MigrationEndNs    int64 `json:"migration_end_ns" kv:"migration_end_ns"`

	PrepareMs    float64 `json:"prepare_ms" kv:"prepare_ms"`
	QuiesceMs    float64 `json:"quiesce_ms" kv:"quiesce_ms"`
	FreezeMs     float64 `json:"freeze_ms" kv:"freeze_ms"`
	CheckpointMs float64 `json:"checkpoint_ms" kv:"checkpoint_ms"`
	TransferMs   float64 `json:"transfer_ms" kv:"transfer_ms"`
	// StreamMs is the whole image stream as the destination received it,
	// most of it while the checkpoint was still being written.
	StreamMs  float64 `json:"stream_ms" kv:"stream_ms"`
	RestoreMs float64 `json:"restore_ms" kv:"restore_ms"`
	SwitchMs  float64 `json:"switch_ms" kv:"switch_ms"`
	ResumeMs  float64 `json:"resume_ms" kv:"resume_ms"`
	HandoffMs float64 `json:"handoff_ms" kv:"handoff_ms"`
	CleanupMs float64 `json:"cleanup_ms" kv:"cleanup_ms"`
	// TimeToReadyMs runs from the freeze to the moment the destination is
	// unlocked behind the switch: the seed's "client-visible downtime"
	// bound, before the client's own retransmission timer adds its share.
	TimeToReadyMs float64 `json:"time_to_ready_ms" kv:"time_to_ready_ms"`
	TotalMs       float64 `json:"total_ms" kv:"total_ms"`
	RollbackMs    float64 `json:"rollback_ms,omitempty" kv:"rollback_ms"`
	// PostCopyMs runs from ready to the last page on the destination
	// (post-copy only): until then the container depends on the source.
	PostCopyMs float64 `json:"post_copy_ms,omitempty" kv:"post_copy_ms"`
	// ImageStageMs and ImageStageB: sending the container's image to a
	// destination that lacked it, before anything else (and outside
	// TotalMs); 0 when it had it.
	ImageStageMs float64 `json:"image_stage_ms,omitempty" kv:"image_stage_ms"`
	ImageStageB  int64   `json:"image_stage_bytes,omitempty" kv:"image_stage_bytes"`
	// Compress is how the image stream was packed ("" none, "zstd"), and
	// TransferWireB what it put on the wire (CheckpointB is the content).
	Compress      string `json:"compress,omitempty" kv:"compress"`
	TransferWireB int64  `json:"transfer_wire_bytes,omitempty" kv:"transfer_wire_bytes"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// WriteKV writes the record as the seed's key=value lines.
func (r *Record) WriteKV(w io.Writer) error {
	v := reflect.ValueOf(r).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		key := t.Field(i).Tag.Get("kv")
		var s string
		switch f := v.Field(i); f.Kind() {
		case reflect.String:
			s = strings.ReplaceAll(f.String(), "\n", " ")
		case reflect.Int64:
			s = strconv.FormatInt(f.Int(), 10)
		case reflect.Float64:
			s = strconv.FormatFloat(f.Float(), 'f', 3, 64)
		}
		if _, err := fmt.Fprintf(w, "%s=%s\n", key, s); err != nil {
			return err
		}
	}
	return nil
}

// ReadKV parses WriteKV's output; unknown keys are ignored, as the seed's
// readers do.
func ReadKV(rd io.Reader) (*Record, error) {
	r := &Record{}
	v := reflect.ValueOf(r).Elem()
	idx := map[string]int{}
	for i := 0; i < v.NumField(); i++ {
		idx[v.Type().Field(i).Tag.Get("kv")] = i
	}
	sc := bufio.NewScanner(rd)
	for sc.Scan() {
		k, val, ok := strings.Cut(sc.Text(), "=")
		i, known := idx[k]
		if !ok || !known {
			continue
		}
		switch f := v.Field(i); f.Kind() {
		case reflect.String:
			f.SetString(val)
		case reflect.Int64:
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			f.SetInt(n)
		case reflect.Float64:
			n, err := strconv.ParseFloat(val, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			// ParseFloat takes "NaN" and "Inf", which no duration is and
			// which the record's JSON cannot hold.
			if math.IsNaN(n) || math.IsInf(n, 0) {
				return nil, fmt.Errorf("%s: %q is not a number of milliseconds", k, val)
			}
			f.SetFloat(n)
		}
	}
	return r, sc.Err()
}

// WriteFiles writes base.txt (key=value) and base.json.
func (r *Record) WriteFiles(base string) error {
	f, err := os.Create(base + ".txt")
	if err != nil {
		return err
	}
	if err := r.WriteKV(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(base+".json", b, 0o644)
}

// Keys lists the key=value keys in file order (for docs and tests).
func Keys() []string {
	t := reflect.TypeOf(Record{})
	out := make([]string, t.NumField())
	for i := range out {
		out[i] = t.Field(i).Tag.Get("kv")
	}
	return out
}
