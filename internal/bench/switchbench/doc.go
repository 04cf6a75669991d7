// Package switchbench measures the containerflow switch (cflow bench
// switch) in one run, on testbeds it builds and removes itself:
//
//   - update_latency_us: one address move through the controller's HTTP
//     API, from the request sent by a client on hostA (where agents run) to
//     the answer received, the map update included;
//   - forward_pps: the small-packet forwarding rate between hostA and hostB
//     through the eBPF switch and through a Linux bridge on the same
//     topology, in alternating rounds, counted at the receiving host;
//   - lb_imbalance: max/mean share of the members of a 4-member VIP over
//     many flows sent through the real data plane.
//
// Figures are reported, never asserted: the floors (p99 <= 1000 µs, eBPF >=
// bridge) are evaluated and printed as passed or not.
package switchbench
