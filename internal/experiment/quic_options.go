package experiment

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/containerflow/containerflow/internal/migration/transfer"
	"github.com/containerflow/containerflow/internal/testbed"
)

// Condition is one part of the QUIC experiment: what the path looks like
// and whether the server migrates.
type Condition struct {
	Name    string  `json:"name"`
	Migrate bool    `json:"migrate"`
	Loss    float64 `json:"loss_percent,omitempty"` // on the client's link, each way
	// Limited: the management links (the image path) are limited to
	// QUICOptions.MgmtRate.
	Limited  bool   `json:"limited_image_path,omitempty"`
	Compress string `json:"compress,omitempty"` // "" or "zstd"
}

// Dir is the condition's subdirectory of the run ("%" is awkward in
// Markdown links and shells).
func (c Condition) Dir() string { return strings.ReplaceAll(c.Name, "%", "pct") }

// Describe says what the condition is, for the report.
func (c Condition) Describe(o *QUICOptions) string {
	var parts []string
	if c.Migrate {
		parts = append(parts, fmt.Sprintf("%d migrations", o.Migrations))
	} else {
		parts = append(parts, "no migration")
	}
	if c.Loss > 0 {
		parts = append(parts, fmt.Sprintf("%g%% loss each way on the client's link (seed %d)", c.Loss, o.Seed))
	}
	if c.Limited {
		parts = append(parts, fmt.Sprintf("image path (hostA-mgmt, hostB-mgmt) limited to %s", o.MgmtRateText))
	}
	if c.Migrate {
		if c.Compress != "" {
			parts = append(parts, "image stream compressed with "+c.Compress)
		} else {
			parts = append(parts, "image stream uncompressed")
		}
	}
	if !c.Migrate && c.Loss == 0 && !c.Limited {
		parts = append(parts, "clean path")
	}
	return strings.Join(parts, ", ")
}

// DefaultConditions is the whole QUIC experiment, in the order it runs.
var DefaultConditions = []string{"baseline", "clean", "loss-1%", "loss-5%", "bw-uncompressed", "bw-zstd"}

// ParseCondition reads a condition name: baseline, clean, loss-P% (any
// percentage; "loss-1" and "loss-1pct" too), bw-uncompressed, bw-zstd.
func ParseCondition(s string) (Condition, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "baseline":
		return Condition{Name: s}, nil
	case "clean":
		return Condition{Name: s, Migrate: true}, nil
	case "bw-uncompressed", "bw-none", "bw":
		return Condition{Name: "bw-uncompressed", Migrate: true, Limited: true}, nil
	case "bw-zstd":
		return Condition{Name: s, Migrate: true, Limited: true, Compress: transfer.CompressZstd}, nil
	}
	if p, ok := strings.CutPrefix(s, "loss-"); ok {
		p = strings.TrimSuffix(strings.TrimSuffix(p, "%"), "pct")
		v, err := strconv.ParseFloat(p, 64)
		if err == nil && v > 0 && v < 100 {
			return Condition{Name: "loss-" + strconv.FormatFloat(v, 'f', -1, 64) + "%", Migrate: true, Loss: v}, nil
		}
	}
	return Condition{}, fmt.Errorf("unknown condition %q (baseline, clean, loss-P%% with 0 < P < 100, bw-uncompressed, bw-zstd)", s)
}

// ParseConditions reads a comma-separated list; empty means all.
func ParseConditions(s string) ([]Condition, error) {
	names := DefaultConditions
	if strings.TrimSpace(s) != "" {
		names = strings.Split(s, ",")
	}
	var out []Condition
	seen := map[string]bool{}
	for _, n := range names {
		c, err := ParseCondition(n)
		if err != nil {
			return nil, err
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("condition %s twice", c.Name)
		}
		seen[c.Name] = true
		out = append(out, c)
	}
	return out, nil
}

// QUICOptions configures a QUIC experiment run.
type QUICOptions struct {
	Conditions    []Condition
	SteadyState   time.Duration // each condition: before the first migration; the baseline's length
	PostMigration time.Duration // after each migration
	Migrations    int           // per migrating condition
	Connections   int
	Interval      time.Duration // between requests (and download chunks), per connection
	// MemoryMiB is the server's self-checking ballast, so the images are
	// not tiny and the limited path's transfer time means something.
	MemoryMiB int
	// MgmtRate limits hostA-mgmt and hostB-mgmt (bits/s) in the bw-*
	// conditions; MgmtRateText is how it was written.
	MgmtRate     uint64
	MgmtRateText string
	// Delay and Jitter shape the client's link in every condition (the
	// RTT of the path), Seed the loss and jitter draws.
	Delay, Jitter time.Duration
	Seed          uint64
	OutDir        string
	Binary        string
	Prefix        string
	Progress      io.Writer
	NoPlots       bool
}

func (o *QUICOptions) quicDefaults() {
	if o.Prefix == "" {
		o.Prefix = testbed.DefaultPrefix
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Interval == 0 {
		o.Interval = 10 * time.Millisecond
	}
	if o.Seed == 0 {
		o.Seed = 1 // a run is repeatable unless asked otherwise
	}
	if o.MgmtRateText == "" && o.MgmtRate > 0 {
		o.MgmtRateText = testbed.Impairment{Rate: o.MgmtRate}.String()
	}
}

// Validate checks the settings and that the output directory can be
// written, so a mistake costs nothing.
func (o *QUICOptions) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadOptions, fmt.Sprintf(format, a...))
	}
	limited := false
	for _, c := range o.Conditions {
		limited = limited || c.Limited
	}
	switch {
	case len(o.Conditions) == 0:
		return bad("no condition to run")
	case o.SteadyState < 0:
		return bad("--steady-state must not be negative (got %v)", o.SteadyState)
	case o.PostMigration < 0:
		return bad("--post-migration must not be negative (got %v)", o.PostMigration)
	case o.Migrations < 0:
		return bad("--migrations must not be negative (got %d)", o.Migrations)
	case o.Connections < 1:
		return bad("--connections must be at least 1 (got %d)", o.Connections)
	case o.Interval < 0 || o.Interval > 0 && o.Interval < time.Millisecond:
		return bad("request interval must be at least 1 ms (got %v)", o.Interval)
	case o.MemoryMiB < 0:
		return bad("--memory-mib must not be negative (got %d)", o.MemoryMiB)
	case limited && o.MgmtRate == 0:
		return bad("a bw-* condition needs --mgmt-rate")
	case o.Jitter > o.Delay:
		return bad("--jitter %v exceeds --delay %v", o.Jitter, o.Delay)
	case o.OutDir == "":
		return bad("--out must name a directory")
	case o.Binary == "":
		return bad("no cflow binary to run agents and the workload with")
	}
	if o.MgmtRate > 0 {
		if err := (testbed.Impairment{Rate: o.MgmtRate}).Validate(); err != nil {
			return bad("--mgmt-rate: %v", err)
		}
	}
	if o.Delay > 0 {
		if err := (testbed.Impairment{Delay: o.Delay, Jitter: o.Jitter}).Validate(); err != nil {
			return bad("--delay/--jitter: %v", err)
		}
	}
	if fi, err := os.Stat(o.Binary); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return bad("cflow binary %s is not an executable file", o.Binary)
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return bad("output directory %s cannot be created: %v", o.OutDir, err)
	}
	f, err := os.CreateTemp(o.OutDir, ".cflow-write-test-*")
	if err != nil {
		return bad("output directory %s is not writable: %v", o.OutDir, err)
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}
