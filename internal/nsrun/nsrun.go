package nsrun

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/vishvananda/netns"
)

// NetnsDir is where iproute2 and this project keep named network namespaces.
const NetnsDir = "/run/netns"

// Path returns the bind-mount path of a named network namespace. A value that
// already looks like a path is returned unchanged.
func Path(nameOrPath string) string {
	if filepath.IsAbs(nameOrPath) {
		return nameOrPath
	}
	return filepath.Join(NetnsDir, nameOrPath)
}

// Do runs fn with the calling thread inside the network namespace nsName (a
// name under /run/netns or an absolute path; "" runs fn where the caller
// is, for agents that live in their host's namespace already).
func Do(nsName string, fn func() error) error {
	if nsName == "" {
		return fn()
	}
	target, err := netns.GetFromPath(Path(nsName))
	if err != nil {
		return fmt.Errorf("open netns %s: %w", nsName, err)
	}
	defer target.Close()
	return DoHandle(target, fn)
}

// DoHandle is Do for an already opened namespace handle.
func DoHandle(target netns.NsHandle, fn func() error) error {
	return onThreadIn(func() error { return netns.Set(target) }, fn)
}

// onThreadIn locks the goroutine to its thread, moves the thread with
// enter (which may leave it anywhere when it fails), runs fn, and puts the
// thread back into its original namespace. A thread that cannot be put
// back stays locked, so the runtime retires it with the goroutine instead
// of handing it, in the wrong namespace, to other goroutines.
func onThreadIn(enter, fn func() error) (err error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get current netns: %w", err)
	}
	defer orig.Close()
	defer func() {
		if rerr := netns.Set(orig); rerr != nil {
			if err == nil {
				err = fmt.Errorf("return to original netns: %w", rerr)
			}
			return
		}
		runtime.UnlockOSThread()
	}()
	if err := enter(); err != nil {
		return fmt.Errorf("enter netns: %w", err)
	}
	return fn()
}

// Start starts cmd inside the network namespace nsName ("": the caller's).
// The child is forked
// from a thread that is inside the namespace, so it inherits it; everything
// else (mount namespace, cgroup, credentials) is the caller's.
func Start(nsName string, cmd *exec.Cmd) error {
	return Do(nsName, cmd.Start)
}

// Run is Start followed by Wait.
func Run(nsName string, cmd *exec.Cmd) error {
	if err := Start(nsName, cmd); err != nil {
		return err
	}
	return cmd.Wait()
}

// Output runs cmd inside nsName and returns its standard output.
func Output(nsName string, cmd *exec.Cmd) ([]byte, error) {
	var out []byte
	err := Do(nsName, func() error {
		var err error
		out, err = cmd.Output()
		return err
	})
	return out, err
}

// Exec replaces the current process with argv[0] running inside nsName. It
// only returns on error. execve from a non-main thread is fine: the kernel
// makes the calling thread the new process, namespace included.
func Exec(nsName string, argv, env []string) error {
	if len(argv) == 0 {
		return fmt.Errorf("exec in %s: empty command", nsName)
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("exec in %s: %w", nsName, err)
	}
	target, err := netns.GetFromPath(Path(nsName))
	if err != nil {
		return fmt.Errorf("open netns %s: %w", nsName, err)
	}
	runtime.LockOSThread()
	if err := netns.Set(target); err != nil {
		return fmt.Errorf("enter netns %s: %w", nsName, err)
	}
	return fmt.Errorf("exec %s in %s: %w", path, nsName, syscall.Exec(path, argv, env))
}

// DoNew runs fn inside a fresh, anonymous network namespace that disappears
// when fn returns (nothing refers to it any more). Probes use it to try
// kernel features without touching any real namespace.
func DoNew(fn func() error) error {
	return onThreadIn(func() error {
		h, err := netns.New() // creates it and moves the thread into it
		if err == nil {
			h.Close()
		}
		return err
	}, fn)
}
