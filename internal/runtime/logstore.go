package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// LogConfig bounds what a host keeps of a container's output: MaxFiles
// files of at most MaxBytes each, the one being written included; the
// oldest file goes when a new one starts.
type LogConfig struct {
	MaxBytes int64 `json:"max_bytes,omitempty"`
	MaxFiles int   `json:"max_files,omitempty"`
}

// The defaults keep 30 MiB per container: Docker's json-file keeps
// everything unless told otherwise, which is how one noisy server filled
// 131 MB in seconds here; its "local" driver keeps 5 x 20 MB.
const (
	DefaultLogMaxBytes = 10 << 20
	DefaultLogMaxFiles = 3
	MinLogMaxBytes     = 4 << 10
	MaxLogMaxFiles     = 100
)

// WithDefaults fills the zero fields.
func (c LogConfig) WithDefaults() LogConfig {
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultLogMaxBytes
	}
	if c.MaxFiles == 0 {
		c.MaxFiles = DefaultLogMaxFiles
	}
	return c
}

// Validate accepts zero (the default) or sensible values.
func (c LogConfig) Validate() error {
	if c.MaxBytes != 0 && c.MaxBytes < MinLogMaxBytes {
		return fmt.Errorf("%w: log max size %d: at least %d bytes", ErrBadSpec, c.MaxBytes, MinLogMaxBytes)
	}
	if c.MaxFiles < 0 || c.MaxFiles > MaxLogMaxFiles {
		return fmt.Errorf("%w: log max files %d: 1-%d", ErrBadSpec, c.MaxFiles, MaxLogMaxFiles)
	}
	return nil
}

// segments is a run of log files, each named by the offset of its first
// byte in the container's whole output. Offsets count from the
// container's first byte on whichever host it started, so a reader can
// go on from where it was after a rotation, or on another host after a
// migration.
type segments struct {
	dir  string
	segs []int64 // start offsets of the files kept, ascending
	end  int64   // offset after the last byte
	f    *os.File
	size int64 // bytes in the last file
}

func (s *segments) path(start int64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%020d.log", start))
}

func loadSegments(dir string) (*segments, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s := &segments{dir: dir}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		n, ok := strings.CutSuffix(e.Name(), ".log")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		if off, err := strconv.ParseInt(n, 10, 64); err == nil {
			s.segs = append(s.segs, off)
		}
	}
	sort.Slice(s.segs, func(i, j int) bool { return s.segs[i] < s.segs[j] })
	if n := len(s.segs); n > 0 {
		fi, err := os.Stat(s.path(s.segs[n-1]))
		if err != nil {
			return nil, err
		}
		s.size = fi.Size()
		s.end = s.segs[n-1] + s.size
	}
	return s, nil
}

// write appends p, starting a new file where the current one would go
// past c.MaxBytes — at the last line end that fits, so that files start
// with whole lines when lines are shorter than a file.
func (s *segments) write(p []byte, c LogConfig) error {
	for len(p) > 0 {
		if s.f == nil {
			if err := s.open(c); err != nil {
				return err
			}
		}
		room := c.MaxBytes - s.size
		if room <= 0 {
			if err := s.rotate(c); err != nil {
				return err
			}
			continue
		}
		chunk := p
		if int64(len(p)) > room {
			cut := room
			if i := bytes.LastIndexByte(p[:room], '\n'); i >= 0 {
				cut = int64(i) + 1
			}
			chunk = p[:cut]
		}
		n, err := s.f.Write(chunk)
		s.size += int64(n)
		s.end += int64(n)
		if err != nil {
			return err
		}
		p = p[n:]
		if len(p) > 0 {
			if err := s.rotate(c); err != nil {
				return err
			}
		}
	}
	return nil
}

// open opens the last file for appending, or starts one.
func (s *segments) open(c LogConfig) error {
	if n := len(s.segs); n > 0 && s.size < c.MaxBytes {
		f, err := os.OpenFile(s.path(s.segs[n-1]), os.O_WRONLY|os.O_APPEND, 0o644)
		if err == nil {
			s.f = f
			return nil
		}
	}
	return s.rotate(c)
}

// rotate starts a new file at the current end and removes the oldest
// beyond c.MaxFiles. Opening and unlinking are all it costs the copier.
func (s *segments) rotate(c LogConfig) error {
	s.closeFile()
	f, err := os.OpenFile(s.path(s.end), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	s.f, s.size = f, 0
	if n := len(s.segs); n == 0 || s.segs[n-1] != s.end {
		s.segs = append(s.segs, s.end)
	}
	s.trim(c)
	return nil
}

func (s *segments) trim(c LogConfig) {
	for len(s.segs) > c.MaxFiles {
		_ = os.Remove(s.path(s.segs[0]))
		s.segs = s.segs[1:]
	}
}

func (s *segments) closeFile() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

func (s *segments) start() int64 {
	if len(s.segs) == 0 {
		return s.end
	}
	return s.segs[0]
}

// logStore is a container's log on this host. While an incoming
// container's history is still arriving from its previous host, the
// container's own output waits in pending (its offsets are not known
// before the history's end is); Release puts it after the history.
type logStore struct {
	mu      sync.Mutex
	cfg     LogConfig
	main    *segments
	pending *segments
	writers int  // sinks attached
	gone    bool // removed: readers stop
	changed chan struct{}
}

func (st *logStore) notify() {
	close(st.changed)
	st.changed = make(chan struct{})
}

func (st *logStore) write(p []byte) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.gone {
		return nil
	}
	if st.pending != nil {
		return st.pending.write(p, st.cfg)
	}
	err := st.main.write(p, st.cfg)
	st.notify()
	return err
}

func (st *logStore) attach() {
	st.mu.Lock()
	st.writers++
	st.notify()
	st.mu.Unlock()
}

func (st *logStore) detach() {
	st.mu.Lock()
	st.writers--
	st.notify()
	st.mu.Unlock()
}

func (st *logStore) close() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.main.closeFile()
	if st.pending != nil {
		st.pending.closeFile()
	}
	st.gone = true
	st.notify()
}

func (r *Runtime) logDir(name string) string { return filepath.Join(r.dir, "logs", name) }

// store returns the container's log, loading what a previous agent left.
func (r *Runtime) store(name string) (*logStore, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st, ok := r.stores[name]; ok {
		return st, nil
	}
	main, err := loadSegments(r.logDir(name))
	if err != nil {
		return nil, err
	}
	// Output of an incoming container whose history never completed (the
	// agent stopped): better shown after what there is than lost.
	if p, err := loadSegments(filepath.Join(r.logDir(name), "pending")); err == nil {
		rebase(main, p)
	}
	st := &logStore{cfg: LogConfig{}.WithDefaults(), main: main, changed: make(chan struct{})}
	r.stores[name] = st
	return st, nil
}

// setLogConfig applies a container's log bounds from its next write on.
func (r *Runtime) setLogConfig(name string, c LogConfig) error {
	st, err := r.store(name)
	if err != nil {
		return err
	}
	st.mu.Lock()
	st.cfg = c.WithDefaults()
	st.mu.Unlock()
	return nil
}

// freshLog drops whatever a previous container of that name left.
func (r *Runtime) freshLog(name string, c LogConfig) error {
	r.DropLog(name)
	return r.setLogConfig(name, c)
}

// DropLog removes a container's log from this host; readers following it
// stop.
func (r *Runtime) DropLog(name string) {
	r.mu.Lock()
	st := r.stores[name]
	delete(r.stores, name)
	r.mu.Unlock()
	if st != nil {
		st.close()
	}
	_ = os.RemoveAll(r.logDir(name))
}

// HoldLog starts the log of a container about to arrive from another
// host: its own output is kept apart until ReleaseLog, and AppendLog
// fills in the history before it.
func (r *Runtime) HoldLog(name string, c LogConfig) error {
	if err := r.freshLog(name, c); err != nil {
		return err
	}
	st, err := r.store(name)
	if err != nil {
		return err
	}
	p, err := loadSegments(filepath.Join(r.logDir(name), "pending"))
	if err != nil {
		return err
	}
	st.mu.Lock()
	st.pending = p
	st.notify()
	st.mu.Unlock()
	return nil
}

// ErrLogGap says history handed to AppendLog does not continue the log.
var ErrLogGap = errors.New("log history does not continue where the log ends")

// AppendLog adds history, whose first byte is at offset at, to a held
// log. The first piece sets where the log starts (the previous host may
// have rotated the beginning away).
func (r *Runtime) AppendLog(name string, at int64, p []byte) error {
	st, err := r.store(name)
	if err != nil {
		return err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	m := st.main
	if st.pending == nil || st.gone {
		return fmt.Errorf("log of %s is not held for history", name)
	}
	switch {
	case len(m.segs) == 0 && m.end == 0:
		m.end = at
	case at > m.end:
		// Rotated away on the previous host before it could be fetched:
		// the gap is kept, in a file of its own.
		m.end = at
		if err := m.rotate(st.cfg); err != nil {
			return err
		}
	case at < m.end:
		return fmt.Errorf("%w: %d, log of %s ends at %d", ErrLogGap, at, name, m.end)
	}
	err = m.write(p, st.cfg)
	st.notify()
	return err
}

// ReleaseLog ends a hold: the container's output kept meanwhile goes
// after the history.
func (r *Runtime) ReleaseLog(name string) {
	r.mu.Lock()
	st := r.stores[name]
	r.mu.Unlock()
	if st == nil {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.pending == nil || st.gone {
		return
	}
	rebase(st.main, st.pending)
	st.main.trim(st.cfg)
	st.pending = nil
	st.notify()
}

// rebase moves p's files after m's end; an open file stays open.
func rebase(m, p *segments) {
	if len(p.segs) == 0 {
		_ = os.RemoveAll(p.dir)
		return
	}
	base := m.end
	m.closeFile()
	for _, s := range p.segs {
		if err := os.Rename(p.path(s), m.path(base+s)); err == nil {
			m.segs = append(m.segs, base+s)
		}
	}
	m.end = base + p.end
	m.f, m.size = p.f, p.size
	if p.f == nil {
		m.size = m.end - m.segs[len(m.segs)-1]
	}
	_ = os.RemoveAll(p.dir)
}

// Log is a reader's handle on a container's log on this host.
type Log struct{ st *logStore }

// OpenLog returns the container's log here (empty if it has none).
func (r *Runtime) OpenLog(name string) (*Log, error) {
	st, err := r.store(name)
	if err != nil {
		return nil, err
	}
	return &Log{st: st}, nil
}

// HasLog says whether this host keeps a log for the container.
func (r *Runtime) HasLog(name string) bool {
	r.mu.Lock()
	_, ok := r.stores[name]
	r.mu.Unlock()
	if ok {
		return true
	}
	_, err := os.Stat(r.logDir(name))
	return err == nil
}

// LogState is where a log stands.
type LogState struct {
	Start, End int64 // offsets of the oldest byte kept and after the newest
	Live       bool  // output may still come (a writer is attached, or history is arriving)
	Held       bool  // the history from the previous host is still arriving
	Gone       bool  // the log was removed
}

// State returns where the log stands, and a channel closed at its next
// change.
func (l *Log) State() (LogState, <-chan struct{}) {
	st := l.st
	st.mu.Lock()
	defer st.mu.Unlock()
	return LogState{Start: st.main.start(), End: st.main.end, Live: !st.gone && (st.writers > 0 || st.pending != nil),
		Held: st.pending != nil, Gone: st.gone}, st.changed
}

// ReadAt reads from offset off, or from the oldest byte kept if off was
// rotated away; at is the offset of p[0]. It returns io.EOF at the end.
func (l *Log) ReadAt(p []byte, off int64) (n int, at int64, err error) {
	for range 10 {
		st := l.st
		st.mu.Lock()
		m := st.main
		if off < m.start() {
			off = m.start()
		}
		if off >= m.end || len(m.segs) == 0 {
			st.mu.Unlock()
			return 0, off, io.EOF
		}
		i := sort.Search(len(m.segs), func(i int) bool { return m.segs[i] > off }) - 1
		segStart, segEnd := m.segs[i], m.end
		if i+1 < len(m.segs) {
			segEnd = m.segs[i+1]
		}
		path := m.path(segStart)
		st.mu.Unlock()
		f, err := os.Open(path)
		if errors.Is(err, os.ErrNotExist) {
			continue // rotated away meanwhile: start again from what is kept
		}
		if err != nil {
			return 0, off, err
		}
		want := min(int64(len(p)), segEnd-off)
		n, err = f.ReadAt(p[:want], off-segStart)
		f.Close()
		if n > 0 || err != io.EOF {
			if err == io.EOF {
				err = nil
			}
			return n, off, err
		}
		if i+1 == len(m.segs) {
			return 0, off, io.ErrUnexpectedEOF
		}
		off = segEnd // a file cut short by a gap in the history
	}
	return 0, off, fmt.Errorf("log rotating faster than it can be read")
}

// WaitLogDropped returns once the container's log is removed from this
// host (DropLog), or at once if it has none.
func (r *Runtime) WaitLogDropped(ctx context.Context, name string) error {
	r.mu.Lock()
	st := r.stores[name]
	r.mu.Unlock()
	if st == nil {
		return nil
	}
	for {
		st.mu.Lock()
		gone, ch := st.gone, st.changed
		st.mu.Unlock()
		if gone {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// TailOffset is the offset of the start of the last n lines kept (a
// last line without its newline counts as one), and the end of the log
// they were counted back from: lines written meanwhile come after it.
func (l *Log) TailOffset(n int) (from, end int64, err error) {
	s, _ := l.State()
	if n <= 0 {
		return s.End, s.End, nil
	}
	buf := make([]byte, 32<<10)
	pos, lines := s.End, 0
	for pos > s.Start {
		from := max(s.Start, pos-int64(len(buf)))
		b := buf[:pos-from]
		got := 0
		for got < len(b) {
			k, at, err := l.ReadAt(b[got:], from+int64(got))
			if at != from+int64(got) {
				return at, s.End, nil // what was being read is rotated away: keep what remains
			}
			got += k
			if err != nil && got < len(b) {
				return 0, 0, err
			}
		}
		for i := len(b) - 1; i >= 0; i-- {
			if b[i] != '\n' || from+int64(i) == s.End-1 {
				continue
			}
			if lines++; lines == n {
				return from + int64(i) + 1, s.End, nil
			}
		}
		pos = from
	}
	return s.Start, s.End, nil
}

// Wait returns when the log has bytes past off, or will have none: it is
// not live any more, or was removed.
func (l *Log) Wait(ctx context.Context, off int64) (LogState, error) {
	for {
		s, ch := l.State()
		if s.End > off || !s.Live {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-ch:
		}
	}
}

// CopyTo writes the log from offset from (or the oldest byte kept) up to
// where it ends when called — a writer faster than w must not keep it
// going — and returns the offsets of the first byte written and after the
// last.
func (l *Log) CopyTo(w io.Writer, from int64) (start, end int64, err error) {
	s, _ := l.State()
	buf := make([]byte, 32<<10)
	start, off := int64(-1), from
	for {
		if off >= s.End {
			if start < 0 {
				start = max(off, s.Start)
			}
			return start, max(off, s.Start), nil
		}
		n, at, err := l.ReadAt(buf[:min(int64(len(buf)), s.End-off)], off)
		if start < 0 {
			start = at
		}
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return start, at, werr
			}
		}
		off = at + int64(n)
		if err == io.EOF {
			return start, off, nil
		}
		if err != nil {
			return start, off, err
		}
	}
}
