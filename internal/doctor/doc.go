// Package doctor checks that this machine can run containerflow: kernel
// features, privileges, CRIU, runc and the tools the testbed uses. Every
// check is a real probe (a veth is created, a BPF program attached, a socket
// put in repair mode) inside a throwaway network namespace, not a guess
// from version numbers, and every failure comes with the fix.
package doctor
