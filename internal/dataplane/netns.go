package dataplane

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// inNetns runs fn on an OS thread that is inside the switch's network
// namespace (Options.Netns). Interface names, ifindexes, TCX link creation
// and tc netlink requests are all resolved in the namespace of the calling
// thread, so every one of them goes through here.
func (d *Dataplane) inNetns(fn func() error) error {
	if d.opts.Netns == "" {
		return fn()
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get current netns: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromPath(d.opts.Netns)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open netns %s: %w", d.opts.Netns, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns %s: %w", d.opts.Netns, err)
	}
	defer func() {
		// If the thread cannot go back it stays locked, and the runtime
		// ends it with this goroutine instead of reusing it elsewhere.
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
	}()
	return fn()
}
