package stream

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"time"
)

// Ballast is memory a workload holds so a migration has that much to
// move: every 4 KiB page is touched and carries its own index, and a
// checker walks it periodically, so a page lost or mixed up on the way
// (post-copy, a torn image) is caught, not just the connections' bytes.
type Ballast struct {
	buf []byte
}

const pageSize = 4096

// NewBallast allocates and fills mib MiB.
func NewBallast(mib int) *Ballast {
	b := &Ballast{buf: make([]byte, mib<<20)}
	for p := 0; p+pageSize <= len(b.buf); p += pageSize {
		fill(b.buf[p:p+pageSize], uint64(p/pageSize))
	}
	return b
}

// fill writes a page that no other page and no zero page equals.
func fill(page []byte, idx uint64) {
	for off := 0; off < len(page); off += 8 {
		binary.LittleEndian.PutUint64(page[off:], idx*0x9e3779b97f4a7c15+uint64(off)+1)
	}
}

// Verify checks every page and says which is wrong first.
func (b *Ballast) Verify() error {
	want := make([]byte, pageSize)
	for p := 0; p+pageSize <= len(b.buf); p += pageSize {
		fill(want, uint64(p/pageSize))
		if string(b.buf[p:p+pageSize]) != string(want) {
			return fmt.Errorf("ballast page %d of %d corrupted", p/pageSize, len(b.buf)/pageSize)
		}
	}
	return nil
}

// BallastVerified is what the workload logs after a good check.
const BallastVerified = "memory verified"

// Check verifies the ballast whenever asked and every period until ctx
// ends, and reports each result (nil: every page intact).
func (b *Ballast) Check(ctx context.Context, ask <-chan os.Signal, period time.Duration, report func(error)) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-ask:
		}
		err := b.Verify()
		report(err)
		if err != nil {
			return
		}
	}
}
