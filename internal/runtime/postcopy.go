package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/containerflow/containerflow/internal/criu"
	"github.com/containerflow/containerflow/internal/nsrun"
)

// Post-copy (CRIU's lazy pages). The source dumps everything but the
// container's memory and keeps the pages, serving them from a page server;
// the destination restores at once, and a lazy-pages daemon fills the
// memory through userfaultfd — the pages the container touches first, the
// rest in the background. The frozen window then no longer grows with the
// memory.
//
// The price, said plainly: until the last page has arrived the container
// depends on the source. If the transfer breaks (the source host, its
// agent or the network between them fails), the destination copy has
// pages it can never get, and the source copy is behind what its clients
// already saw: the container is lost on both sides. The destination kills
// its copy at once (a page fault without the daemon would otherwise be
// answered with a zero page, corrupting memory silently).

// PostCopy is a page transfer in progress, seen from either side.
type PostCopy struct {
	started time.Time
	done    chan struct{}
	err     error
	kill    func()
	once    sync.Once
}

func newPostCopy(kill func()) *PostCopy {
	return &PostCopy{started: time.Now(), done: make(chan struct{}), kill: kill}
}

func (p *PostCopy) finish(err error) {
	p.once.Do(func() { p.err = err; close(p.done) })
}

// Wait returns once every page has been transferred, or the transfer
// failed; ctx bounds the wait (the transfer goes on).
func (p *PostCopy) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Took is how long the transfer has run (or ran).
func (p *PostCopy) Took() time.Duration { return time.Since(p.started) }

// Abort stops the transfer (kills the page server or the daemon).
func (p *PostCopy) Abort() { p.kill() }

// DumpPostCopy dumps the frozen container without its memory and returns
// once CRIU's page server is ready: the images in ImagesDir are complete
// and the destination can restore. The pages are served until the
// destination has them all (PostCopy.Wait); the source's tasks stay
// frozen until then.
//
// Until the destination has every page, Abort makes CRIU resume the tasks
// here (a rollback). Once it has them all, CRIU ends the dump and kills
// the tasks, even if the destination has not gone live yet: the restore
// itself needs pages (CRIU's restorer touches the thread's memory), so
// the page server cannot be held back until then. A failure between the
// last page and go-live loses the container; docs/migration.md says when
// that can happen.
func (d *Dumper) DumpPostCopy(ctx context.Context) (*PostCopy, error) {
	if d.opts.GetPs() == nil {
		d.Close()
		return nil, errors.New("dump was not prepared for post-copy (no page server port)")
	}
	if err := d.writeDescriptors(); err != nil {
		d.Close()
		return nil, err
	}
	// The page server outlives the request that started it.
	pctx, cancel := context.WithCancel(context.Background())
	port := int(d.opts.GetPs().GetPort())
	pc := newPostCopy(nil)
	pc.kill = func() {
		// Killing CRIU would take the frozen tasks with it. Make its page
		// server fail instead: CRIU then resumes the tasks on the source.
		abortPageServer(d.netns, port)
		select {
		case <-pc.done:
		case <-time.After(5 * time.Second):
			cancel()
		}
	}
	ready := make(chan struct{})
	var once sync.Once
	go func() {
		defer d.Close()
		err := d.w.Dump(pctx, d.opts, func(script string, _ int) error {
			if script == "status-ready" {
				once.Do(func() { close(ready) })
			}
			return nil
		})
		if err != nil {
			err = criu.Failed("post-copy of "+d.name, err, filepath.Join(d.work.Name(), "dump.log"))
		} else {
			d.r.detachLogLater(d.name) // the tasks are gone; their output is drained
		}
		pc.finish(err)
	}()
	select {
	case <-ready:
		pc.started = time.Now()
		return pc, nil
	case <-pc.done:
		if pc.err == nil {
			return nil, fmt.Errorf("checkpoint %s: the dump ended before its page server was ready", d.name)
		}
		return nil, pc.err
	case <-ctx.Done():
		cancel()
		<-pc.done
		return nil, fmt.Errorf("checkpoint %s: %w", d.name, ctx.Err())
	}
}

// abortPageServer makes a post-copy page server on port fail, which is
// the one end of a lazy dump after which CRIU lets the tasks run again.
// An end of stream is not enough: CRIU takes it for "all pages sent" and
// kills the tasks. So an established connection (the destination's
// daemon) is destroyed (sock_diag SOCK_DESTROY: the server reads an
// error), and a server still waiting for its client gets one that sends
// a truncated request.
func abortPageServer(netns string, port int) {
	// ss -K (SOCK_DESTROY) covers both address families: CRIU's page
	// server listens on every address, so its connection may be an IPv6
	// socket carrying IPv4.
	_ = nsrun.Run(netns, exec.Command("ss", "-K", "-t", "state", "established", "sport", "=", ":"+strconv.Itoa(port)))
	_ = nsrun.Do(netns, func() error {
		if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second); err == nil {
			_, _ = c.Write([]byte{0})
			c.Close()
		}
		return nil
	})
}

// startLazyPages starts CRIU's lazy-pages daemon for a post-copy restore
// and waits until it listens for the restore. It cannot be started
// earlier: it reads the images when it starts.
func (r *Runtime) startLazyPages(o DirectOpts) (*PostCopy, error) {
	host, port, err := net.SplitHostPort(o.PageServer)
	if err != nil {
		return nil, fmt.Errorf("page server %q: %w", o.PageServer, err)
	}
	if _, err := strconv.Atoi(port); err != nil {
		return nil, fmt.Errorf("page server %q: bad port", o.PageServer)
	}
	sr, sw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer sr.Close()
	args := []string{"lazy-pages", "--page-server", "--address", host, "--port", port,
		"--images-dir", o.ImagesDir, "--work-dir", o.WorkDir, "--log-file", "lazy-pages.log",
		"-v" + strconv.Itoa(int(*o.level())), "--status-fd", "3"}
	if t := o.PageServerTLS; t != nil {
		args = append(args, "--tls", "--tls-cacert", t.CA, "--tls-cert", t.Cert, "--tls-key", t.Key)
	}
	cmd := r.criu.Command(args...)
	cmd.ExtraFiles = []*os.File{sw}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := nsrun.Start(o.HostNetns, cmd); err != nil {
		sw.Close()
		return nil, fmt.Errorf("start criu lazy-pages: %w", err)
	}
	sw.Close()
	if o.Nice != 0 {
		_ = unix.Setpriority(unix.PRIO_PROCESS, cmd.Process.Pid, o.Nice)
	}
	pc := newPostCopy(func() { _ = cmd.Process.Kill() })
	go func() {
		err := cmd.Wait()
		if err != nil {
			err = criu.Failed("lazy-pages daemon", err, filepath.Join(o.WorkDir, "lazy-pages.log"))
		}
		pc.finish(err)
	}()
	// One byte on the status fd: listening. EOF: it died.
	_ = sr.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := sr.Read(make([]byte, 1)); n != 1 {
		pc.Abort()
		<-pc.done
		return nil, fmt.Errorf("criu lazy-pages did not start: %v; %v", err, pc.err)
	}
	pc.started = time.Now()
	return pc, nil
}
