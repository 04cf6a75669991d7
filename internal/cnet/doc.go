// Package cnet creates and removes a container's network namespace: one
// macvlan interface on a host's uplink with a fixed IP and MAC, so the
// same address can be brought up on another host for a same-IP migration.
// It also network-locks a namespace (an nftables table dropping all IPv4
// traffic in and out), which is how a migration keeps a restored container
// silent until the switch points at it, and keeps a container being
// discarded from sending FIN or RST to its peers.
package cnet
