// Package tclass keeps migration traffic in a lower class than live
// service traffic on a host's link.
//
// Two halves, which work apart but are meant together:
//
//   - Marking: the agent sets a DSCP (default CS1, "lower effort") on every
//     connection it dials to another agent (Control) and on the
//     connections it accepts from them (Listener). The mark travels with
//     the packets, so a DiffServ-aware network can honour it too.
//   - Scheduling: on the host's uplink, an HTB root qdisc (Install) with a
//     parent class at the link's rate, a "live" class (the default, priority
//     0, guaranteed most of the rate) and a "migration" class (priority 1, a
//     small guaranteed share), both allowed to borrow up to the whole rate,
//     and u32 filters that send the marked packets to "migration".
//
// See docs/operations.md#migration-traffic-class for why CS1 and why the
// migration class keeps a guaranteed share.
package tclass
