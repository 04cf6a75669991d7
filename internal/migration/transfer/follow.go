package transfer

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A Follower sends the files of a flat directory (CRIU's images) while a
// writer is still filling it: each file as soon as it is closed after
// writing, and a file only ever appended to (Tree.Appends) in segments
// as it grows, so the transfer overlaps the dump instead of following it.
// A file written again after it was sent is sent again at the end, so the
// stream always ends with the directory as the writer left it.
type Follower struct {
	s       *Sender
	name    string // top-level name in the stream
	dir     string
	appends func(string) bool
	fd      int
	wd      int
	sent    map[string]bool // base name -> sent and not modified since
	dirty   map[string]bool
	grown   map[string]bool  // appended-to files written since last sent
	off     map[string]int64 // appended-to files: bytes sent
	wake    [2]int           // a pipe that interrupts the wait for events
}

// segmentMin is the growth of an appended-to file worth a segment: CRIU
// writes its pages in chunks of a few MiB (a page pipe's worth), and a
// segment costs an open and a header.
const segmentMin = 1 << 20

// Follow starts watching t.Dir (which must exist). Files already in it
// are sent by Finish.
func (s *Sender) Follow(t Tree) (*Follower, error) {
	name, dir := t.Name, t.Dir
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	wd, err := unix.InotifyAddWatch(fd, dir, unix.IN_CLOSE_WRITE|unix.IN_MODIFY|unix.IN_MOVED_TO|unix.IN_CREATE)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	f := &Follower{s: s, name: name, dir: dir, appends: t.Appends, fd: fd, wd: wd,
		sent: map[string]bool{}, dirty: map[string]bool{}, grown: map[string]bool{}, off: map[string]int64{}}
	if f.appends == nil {
		f.appends = func(string) bool { return false }
	}
	if err := unix.Pipe2(f.wake[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return f, nil
}

// Run sends files as they are completed until Stop is called; it returns
// then, or on the first error. The sender must not be used by anyone else
// meanwhile.
func (f *Follower) Run() error {
	fds := []unix.PollFd{{Fd: int32(f.fd), Events: unix.POLLIN}, {Fd: int32(f.wake[0]), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); err != nil && !errors.Is(err, unix.EINTR) {
			return err
		}
		ready, err := f.drainEvents()
		if err != nil {
			return err
		}
		for _, b := range ready {
			if err := f.send(b); err != nil {
				return err
			}
		}
		for b := range f.grown {
			if err := f.sendGrowth(b); err != nil {
				return err
			}
		}
		if fds[1].Revents != 0 {
			return nil
		}
	}
}

// Stop makes Run return after the events already queued.
func (f *Follower) Stop() { _, _ = unix.Write(f.wake[1], []byte{1}) }

// Finish sends every file of the directory not sent yet or changed since
// it was sent, and releases the watch. Call it after Run returned and the
// writer is done.
func (f *Follower) Finish() error {
	defer f.close()
	ready, err := f.drainEvents()
	if err != nil {
		return err
	}
	for _, b := range ready {
		f.dirty[b] = true
	}
	ents, err := os.ReadDir(f.dir)
	if err != nil {
		return err
	}
	var todo []string
	for _, e := range ents {
		// An appended-to file is sent again from where it was left.
		if e.Type().IsRegular() && (!f.sent[e.Name()] || f.dirty[e.Name()] || f.appends(e.Name())) {
			todo = append(todo, e.Name())
		}
	}
	sort.Strings(todo)
	for _, b := range todo {
		if err := f.send(b); err != nil {
			return err
		}
	}
	return nil
}

func (f *Follower) close() {
	unix.Close(f.fd)
	unix.Close(f.wake[0])
	unix.Close(f.wake[1])
}

// send sends a file completed: whole, or what an appended-to one has
// not sent yet.
func (f *Follower) send(base string) error {
	var err error
	if f.appends(base) {
		f.off[base], err = f.s.segment(path.Join(f.name, base), filepath.Join(f.dir, base), f.off[base])
	} else {
		err = f.s.file(path.Join(f.name, base), filepath.Join(f.dir, base))
	}
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			delete(f.sent, base) // renamed or removed meanwhile
			delete(f.off, base)
			delete(f.grown, base)
			return nil
		}
		return err
	}
	f.sent[base] = true
	delete(f.dirty, base)
	delete(f.grown, base)
	return nil
}

// sendGrowth sends what an appended-to file still being written has
// gained, once that is worth a segment.
func (f *Follower) sendGrowth(base string) error {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(f.dir, base), &st); err != nil {
		delete(f.grown, base) // gone: Finish sees what is there
		return nil
	}
	if st.Size-f.off[base] < segmentMin && st.Size >= f.off[base] {
		return nil
	}
	return f.send(base)
}

// drainEvents reads every queued event and returns the files completed
// (closed after writing, or renamed into place) since the last call.
func (f *Follower) drainEvents() ([]string, error) {
	var ready []string
	seen := map[string]bool{}
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(f.fd, buf)
		if errors.Is(err, unix.EAGAIN) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read inotify: %w", err)
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameBytes := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			off += unix.SizeofInotifyEvent + int(ev.Len)
			if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
				// Lost events (they carry no name): Finish sends everything
				// not known clean.
				for b := range f.sent {
					f.dirty[b] = true
				}
				continue
			}
			base := cstring(nameBytes)
			if base == "" {
				continue
			}
			switch {
			case ev.Mask&(unix.IN_CLOSE_WRITE|unix.IN_MOVED_TO) != 0:
				if !seen[base] {
					seen[base] = true
					ready = append(ready, base)
				}
			case ev.Mask&unix.IN_MODIFY != 0 && f.appends(base):
				f.grown[base] = true
			case ev.Mask&(unix.IN_MODIFY|unix.IN_CREATE) != 0:
				if f.sent[base] {
					f.dirty[base] = true
				}
			}
		}
	}
	return ready, nil
}

func cstring(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// Stream is a checkpoint stream in progress: whole trees first, then the
// files of a directory a writer is still filling, each as it is completed.
type Stream struct {
	fol   *Follower
	pw    *io.PipeWriter
	done  chan struct{}
	sent  chan error
	reply chan error
	wire  atomic.Int64 // bytes into the body, after compression
}

// WireBytes is what the stream has put on the wire so far.
func (st *Stream) WireBytes() int64 { return st.wire.Load() }

// StartStream opens the stream: post is given its body (and runs until
// the receiver has answered); compress packs it (CompressZstd, or "" for
// none: the receiver must be told, see NewReceiver); wrap, when set, sits
// between that and the body (fault injection); trees are sent first, then
// follow's files.
func StartStream(trees []Tree, follow Tree, compress string, wrap func(io.Writer) io.Writer, post func(io.Reader) error) (*Stream, error) {
	if err := os.MkdirAll(follow.Dir, 0o700); err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	st := &Stream{done: make(chan struct{}), sent: make(chan error, 1), reply: make(chan error, 1)}
	var w io.Writer = &countingWriter{w: pw, n: &st.wire}
	if wrap != nil {
		w = wrap(w)
	}
	enc, err := compressor(compress, w)
	if err != nil {
		return nil, err
	}
	if enc != nil {
		w = enc
	}
	s := NewSender(w)
	fol, err := s.Follow(follow)
	if err != nil {
		return nil, err
	}
	st.fol, st.pw = fol, pw
	go func() {
		var err error
		for _, t := range trees {
			if err == nil {
				err = s.Tree(t)
			}
		}
		if err == nil {
			err = fol.Run()
		}
		<-st.done // the writer is done: what is left can go
		if ferr := fol.Finish(); err == nil {
			err = ferr
		}
		if err == nil {
			_, err = s.Close()
		}
		if enc != nil {
			if cerr := enc.Close(); err == nil {
				err = cerr // the last compressed block
			}
		}
		pw.CloseWithError(err)
		st.sent <- err
	}()
	go func() {
		err := post(pr)
		pr.CloseWithError(errors.New("the receiver answered"))
		st.reply <- err
	}()
	return st, nil
}

// end tells the sender the writer is done and waits for it.
func (st *Stream) end() error {
	st.fol.Stop()
	close(st.done)
	return <-st.sent
}

// Finish sends what is left and the manifest, and returns the receiver's
// answer (or the sender's error, if the receiver had none).
func (st *Stream) Finish() error {
	serr := st.end()
	if err := <-st.reply; err != nil {
		return err
	}
	return serr
}

// Cancel cuts the stream: the receiver sees it end without a manifest.
func (st *Stream) Cancel(cause error) {
	st.pw.CloseWithError(cause)
	_ = st.end()
	<-st.reply
}
