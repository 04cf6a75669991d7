package experiment

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/containerflow/containerflow/internal/testbed"
)

// Options configures a run.
type Options struct {
	SteadyState   time.Duration // before the first migration
	PostMigration time.Duration // after each migration
	Migrations    int
	Connections   int
	FPS           int
	// Quiesce sends SIGUSR2 before each checkpoint (and after the restore)
	// and waits up to 2 s for the send queues to drain, as the seed did.
	// Off by default: CRIU's TCP repair carries queued data across, so
	// pausing the stream only lengthens what the clients see.
	Quiesce bool
	OutDir  string // run_YYYYMMDD_HHMMSS is created inside
	Binary  string // the cflow executable: agents, workload and load generator
	Prefix  string // testbed prefix
	// Scrape is the collection interval (1 s, as the seed).
	Scrape   time.Duration
	Progress io.Writer
	Log      *slog.Logger
	// NoPlots skips the plots (and their section of the report).
	NoPlots bool
	// Impair impairs testbed links (by canonical name, testbed.ParseLink)
	// from right after the testbed is up to the end of the run.
	Impair map[string]testbed.Impairment
}

// ErrBadOptions marks invalid settings, reported before anything starts.
var ErrBadOptions = errors.New("bad experiment options")

// Validate checks the settings and that the output directory can be
// written, so a mistake costs nothing.
func (o *Options) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadOptions, fmt.Sprintf(format, a...))
	}
	switch {
	case o.SteadyState < 0:
		return bad("--steady-state must not be negative (got %v)", o.SteadyState)
	case o.PostMigration < 0:
		return bad("--post-migration must not be negative (got %v)", o.PostMigration)
	case o.Migrations < 0:
		return bad("--migrations must not be negative (got %d)", o.Migrations)
	case o.Connections < 1:
		return bad("--connections must be at least 1 (got %d)", o.Connections)
	case o.FPS < 1 || o.FPS > 1000:
		return bad("--fps must be between 1 and 1000 (got %d)", o.FPS)
	case o.Scrape < 0:
		return bad("scrape interval must not be negative")
	case o.OutDir == "":
		return bad("--out must name a directory")
	case o.Binary == "":
		return bad("no cflow binary to run agents and the workload with")
	}
	for link, im := range o.Impair {
		l, err := testbed.ParseLink(link)
		if err != nil {
			return bad("%v", err)
		}
		// ParseLink knows every host a testbed may have; the
		// experiment's has the default two.
		if _, err := testbed.Spec(l.Node); err != nil {
			return bad("link %s: %v", link, err)
		}
		if err := im.Validate(); err != nil {
			return bad("impairment of %s: %v", link, err)
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

func (o *Options) defaults() {
	if o.Prefix == "" {
		o.Prefix = testbed.DefaultPrefix
	}
	if o.Scrape == 0 {
		o.Scrape = time.Second
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// makeRunDir creates OUT/run_YYYYMMDD_HHMMSS (with a suffix if two runs
// start in the same second).
func makeRunDir(out string, now time.Time) (string, error) {
	base := filepath.Join(out, "run_"+now.Format("20060102_150405"))
	dir := base
	for i := 2; ; i++ {
		err := os.Mkdir(dir, 0o755)
		if err == nil {
			return dir, nil
		}
		if !errors.Is(err, os.ErrExist) || i > 100 {
			return "", fmt.Errorf("create run directory: %w", err)
		}
		dir = fmt.Sprintf("%s_%d", base, i)
	}
}
