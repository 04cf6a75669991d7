// Package loadgen is the experiment's load generator: the seed's WebSocket
// client, plus the checks the seed could not make.
//
// It opens N connections to the workload server (200 ms apart, each with
// exponential backoff from 500 ms to 3 s), sends a timestamped ping on
// each every 100 ms and measures the round trip from the echoes. Its
// /metrics endpoint returns the seed's aggregate (RTT p50/p95/p99/max by
// linear interpolation, average, jitter as the mean absolute difference of
// consecutive RTTs, connection drops), computed over the samples since the
// previous scrape and then reset, so each answer covers one collection
// interval.
//
// Beyond the seed:
//   - every data frame's sequence number is checked per connection, and
//     lost, duplicated and out-of-order frames are counted;
//   - the gap between consecutive frames is measured per connection and
//     gaps above a threshold are kept with their time, so the outage a
//     client actually felt around a migration can be read back (/report);
//   - a dropped connection is re-opened (with the same backoff) and the
//     reconnect counted;
//   - RTTs above the cap (1 s) are still discarded from the seed's figures
//     so they stay comparable, but they are counted, and uncapped p99 and
//     max are reported beside them, so a freeze can no longer hide.
package loadgen
