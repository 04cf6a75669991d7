// Package criu finds a CRIU binary that works on this kernel and checks it.
//
// Debian 12's CRIU 3.17 fails on recent kernels and 4.1 cannot dump TCP
// sockets there, so the project needs CRIU >= 4.2. scripts/install-criu.sh
// installs one into a private prefix when the system's is too old; Find
// looks, in order, at $CFLOW_CRIU, that private install, and `criu` in
// PATH, and returns the first that is new enough. Callers pass the path on
// explicitly (runc --criu PATH), so nothing on the system is replaced.
//
// Worker is a `criu swrk` process started ahead of a dump or restore and
// driven over CRIU's RPC (go-criu's protocol types); EnsureKernelCache keeps
// CRIU's kernel probe off every start; PostCopyReady says whether lazy
// pages can work on this host.
package criu
