// Package placement decides where containers run: a host for one new
// container (Place), destinations for everything on a host being emptied
// (Evacuate), the fewest moves that even out the load (Rebalance), and a
// placement for many new containers at once (PlaceAll).
//
// It is pure computation on the figures it is given: it never talks to an
// agent, so the operations code can plan, show a dry run, then execute the
// moves of a Plan in order and report each one.
//
// The model, after the resource daemon of the flow-processing platform
// (docs/planner.md): a container declares requests (CPU cores, memory
// bytes), a host has a capacity in the same units, and a host's load is its
// dominant share, the larger of its CPU and memory fractions in use. The
// imbalance of a set of hosts is max load / mean load over the schedulable
// ones, and 1 when nothing runs.
//
// Every function is deterministic: hosts and containers are sorted by name
// before anything is decided, ties are broken by name, and no randomness is
// used, so the same input, in any order, gives the same plan.
package placement
