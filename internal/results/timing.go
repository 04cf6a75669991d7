package results

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"

	"github.com/containerflow/containerflow/internal/migration"
)

var timingName = regexp.MustCompile(`^migration_timing_(\d+)\.txt$`)

// TimingBase is the path of migration n's timing files without extension.
func TimingBase(dir string, n int) string {
	return filepath.Join(dir, fmt.Sprintf("migration_timing_%d", n))
}

// Timing is one migration's record with its number.
type Timing struct {
	N int
	migration.Record
}

// LoadTimings reads every migration_timing_N.txt in dir, ordered by N
// (numerically: 10 after 9), as the seed's plotting script does.
func LoadTimings(dir string) ([]Timing, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read timing files: %w", err)
	}
	var out []Timing
	for _, e := range ents {
		m := timingName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read timing file: %w", err)
		}
		rec, err := migration.ReadKV(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", e.Name(), err)
		}
		out = append(out, Timing{N: n, Record: *rec})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].N < out[j].N })
	return out, nil
}
