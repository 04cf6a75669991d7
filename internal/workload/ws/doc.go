// Package ws is the experiment's workload server: the seed's WebSocket
// streaming server, run inside the migrated container.
//
// Each client that connects to /ws gets data frames at a fixed rate (a
// sequence number, a nanosecond timestamp and a 512-byte padding) and an
// echo of every ping it sends, with the client's and the server's
// timestamps, so the load generator can measure round-trip time and check
// that no frame went missing across a migration. SIGUSR2 (wired by the
// command, see Server.ToggleQuiesce) pauses frames and echoes so the TCP
// send queues can drain before a checkpoint, as the seed's cr_hw.sh did.
//
// The metrics endpoint answers the seed's JSON (connected and total
// clients, uptime, bytes, CPU from /proc/self/stat, memory from the Go
// runtime) and, on request, the same numbers as Prometheus text.
//
// The wire format is the seed's JSON text messages, with a "type" field
// added so a reader need not guess which kind a message is (the seed's own
// load generator ignores it).
package ws
