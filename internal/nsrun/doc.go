// Package nsrun runs Go functions and child processes inside a named or
// path-addressed network namespace.
//
// Linux network namespaces are per thread. Every entry point here locks the
// calling goroutine to its OS thread, switches that thread into the target
// namespace, does the work and switches back before unlocking. If switching
// back fails the thread is left locked, so the Go runtime discards it instead
// of handing a thread in the wrong namespace to another goroutine.
//
// Sockets keep the namespace they were created in, so a listener or
// connection made inside Do can be used from any goroutine afterwards.
// Processes started with Start inherit the namespace of the forking thread but
// stay in the caller's mount namespace, which CRIU needs (a process dumped
// from another mount namespace than CRIU's would need its mounts dumped too).
package nsrun
