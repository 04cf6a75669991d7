package migration

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzReadKV: the timing-record parser reads files other programs and
// people edit. It must not panic; what it accepts must be a record that
// can be written back (key=value and JSON) and reads back the same.
func FuzzReadKV(f *testing.F) {
	rec := Record{Container: "web", SourceNode: "hostA", TargetNode: "hostB", Status: "success", Engine: "direct",
		Mode: "stop-and-copy", CheckpointB: 123456, MigrationStartNs: 1700000000000000000, FreezeMs: 12.345,
		TimeToReadyMs: 199.5, TotalMs: 912.25, Error: "x=y"}
	var buf bytes.Buffer
	if err := rec.WriteKV(&buf); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.String())
	f.Add("container=a\nfreeze_ms=NaN\n")
	f.Add("status=ok\r\ntotal_ms=+Inf\n")
	f.Add("error=a\rb\n")
	f.Fuzz(func(t *testing.T, in string) {
		r1, err := ReadKV(bytes.NewReader([]byte(in)))
		if err != nil {
			return
		}
		if _, err := json.Marshal(r1); err != nil {
			t.Fatalf("accepted a record that cannot be written as JSON: %v", err)
		}
		var out bytes.Buffer
		if err := r1.WriteKV(&out); err != nil {
			t.Fatal(err)
		}
		r2, err := ReadKV(&out)
		if err != nil {
			t.Fatalf("cannot read back what WriteKV wrote: %v\n%s", err, out.String())
		}
		// Floats are written with 3 decimals: compare after one round.
		var out2 bytes.Buffer
		_ = r2.WriteKV(&out2)
		r3, err := ReadKV(&out2)
		if err != nil || !reflect.DeepEqual(r2, r3) {
			t.Fatalf("record changed on a second round trip: %v\n%+v\n%+v", err, r2, r3)
		}
		for i, v := 0, reflect.ValueOf(r1).Elem(); i < v.NumField(); i++ {
			if f := v.Field(i); f.Kind() == reflect.String && f.String() != reflect.ValueOf(r2).Elem().Field(i).String() {
				t.Fatalf("%s: %q read back as %q", v.Type().Field(i).Name, f.String(), reflect.ValueOf(r2).Elem().Field(i).String())
			}
		}
	})
}
