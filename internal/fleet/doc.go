// Package fleet operates many hosts: it keeps the hosts the agents
// register, marks them unschedulable, and runs long actions — migrate,
// evacuate, rebalance, run — as operations with an id, a status, progress
// and per-step results (docs/operations.md). It runs inside the switch
// controller's process and serves its API through the controller's
// (controller.Mount), so it shares its token, TLS identities, audit log
// and metrics; it calls the agents as the controller's identity, which
// agents admit as an operator.
//
// Operations are kept in a bbolt file of their own. A controller that
// restarts ends the operations it was running as failed, and says for each
// interrupted step where its container is now: an agent whose caller goes
// away finishes or rolls back its migration on its own (a migration
// cancelled before its go-live rolls back; one past it completes), so
// every container is running somewhere.
package fleet
