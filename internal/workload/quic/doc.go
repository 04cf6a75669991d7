// Package quic is a sequence-checked QUIC workload (on quic-go) for
// measuring migrations of a QUIC server from the client's side.
//
// Each client connection does three things at once: a request/response
// exchange every interval, each request on a stream of its own (sequence
// number and client timestamp in, the same plus the server's own response
// number out); one long download stream on which the server sends
// numbered, checksummed chunks at a fixed rate; and optionally RFC 9221
// datagrams echoed by the server. The client checks every sequence for
// loss, duplication and order, keeps every silence above a threshold with
// its start and end (so a benchmark can compute the outage of migration N
// from a time window), counts handshakes (a connection that survived a
// migration has exactly one) and counts QUIC's own view of the path — lost
// packets, PTOs, packets sent and received — from quic-go's qlog event
// hook, not from guesses.
//
// The protocol and the measurements are described in docs/quic.md.
package quic
