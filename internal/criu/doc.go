// Package criu finds a CRIU binary that works on this kernel and checks it.
//
// Debian 12's CRIU 3.17 fails on recent kernels and 4.1 cannot dump TCP
// sockets there, so the project needs CRIU >= 4.2. scripts/install-criu.sh
// installs one into a private prefix when the system's is too old; Find
// looks, in order, at $CFLOW_CRIU, that private install, and `criu` in
// PATH, and returns the first that is new enough. Callers pass the path on
// explicitly (runc --criu PATH), so nothing on the system is replaced.
package criu
