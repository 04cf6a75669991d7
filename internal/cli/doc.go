// Package cli holds the cflow command tree. main only calls Execute, so
// every command is reachable from tests and the binary stays thin.
package cli
