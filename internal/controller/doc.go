// Package controller is the control plane of the containerflow switch: it
// owns an eBPF [dataplane.Dataplane], keeps the desired content of its tables
// on disk, and serves them over an HTTP JSON API (cflow switch serve).
//
// # Contract
//
//   - Ports come from the configuration ([Config]) and are attached at
//     start; the API refers to them by number or by name ("hostA").
//   - Every write — a seed endpoint (/updateForward, /migrateNode,
//     /addForward, /deleteClientSnat, /cleanup, /reinitialize), a REST call
//     under /v1 or a /v1/batch — is a list of operations ([Op]) that is
//     validated as a whole against a copy of the desired state before
//     anything is written. Bad input is refused with 400/404/409/507 and a
//     JSON {"error": "..."} naming the field, and nothing changes.
//   - A validated list is applied to the data plane in order; should the
//     kernel refuse one step, the steps already applied are undone with the
//     entries read back just before each step, so the tables end as they
//     were (see [Controller.Apply] for the one exception: the flows of a
//     deleted service). Only then is the new desired state committed to the
//     store (bbolt), so an acknowledged change survives a restart.
//   - Moving an address (forward and arp_forward views) is one map update,
//     so packets see the old or the new entry, never a mix.
//   - On start, the pinned data plane is taken over (forwarding never
//     stops) and the stored desired state re-applied: entries that already
//     match are not touched, the others are set or deleted.
//   - Writes need "Authorization: Bearer TOKEN" unless auth is disabled
//     explicitly; reads are open.
//
// [Client] talks to the API; [Steerer] implements the agents' Steerer
// interface on top of it. docs/switch.md and docs/openapi-switch.yaml
// describe the API.
package controller
