package placement

import (
	"errors"
	"fmt"
	"strings"
)

// Host is a machine containers can run on.
type Host struct {
	Name        string
	CPUs        float64 // capacity in cores
	MemoryBytes int64   // capacity
	// Unschedulable hosts receive nothing; what runs on them stays unless
	// Evacuate is asked to empty them.
	Unschedulable bool
}

// Container is a container's requests and where it runs now.
type Container struct {
	Name        string
	CPUs        float64 // request in cores; 0 means negligible
	MemoryBytes int64   // request; 0 means negligible
	Host        string  // where it runs now; "" if not placed
}

// Move is one step of a plan. From is "" when the container is started on
// To rather than migrated (PlaceAll).
type Move struct {
	Container string `json:"container"`
	From      string `json:"from,omitempty"`
	To        string `json:"to"`
}

func (m Move) String() string {
	if m.From == "" {
		return fmt.Sprintf("place %s on %s", m.Container, m.To)
	}
	return fmt.Sprintf("move %s from %s to %s", m.Container, m.From, m.To)
}

// Unplaced is a container a plan could find no host for.
type Unplaced struct {
	Container string `json:"container"`
	Reason    string `json:"reason"`
}

// Plan is what to do, in order. Executing Moves one after the other never
// puts a host over its capacity at any step, so a caller can run them in
// sequence (or, for Evacuate and PlaceAll, in parallel: their moves only
// add to their destinations) and report each.
type Plan struct {
	Moves []Move `json:"moves"`
	// Imbalance (max load / mean load over the schedulable hosts) before
	// and after the moves.
	ImbalanceBefore float64 `json:"imbalance_before"`
	ImbalanceAfter  float64 `json:"imbalance_after"`
	// Reached: the plan does what was asked. Rebalance: the imbalance is
	// at or under the threshold. Evacuate and PlaceAll: every container
	// has a host.
	Reached bool `json:"reached"`
	// Minimal (Rebalance only): no plan with fewer moves reaches the
	// threshold; false when the search for one was too large to finish,
	// which does not mean a shorter plan exists.
	Minimal bool `json:"minimal,omitempty"`
	// Reason says why the plan falls short when Reached is false.
	Reason   string     `json:"reason,omitempty"`
	Unplaced []Unplaced `json:"unplaced,omitempty"`
}

// Options of Rebalance.
type Options struct {
	// Threshold is the imbalance to reach (at or under); 0 means 1.1, the
	// flow-processing platform's target. It cannot be under 1: the max is
	// never under the mean.
	Threshold float64
	// MaxMoves bounds the plan; 0 means no bound.
	MaxMoves int
}

// DefaultThreshold is the imbalance Rebalance aims for when Options leave
// it zero.
const DefaultThreshold = 1.1

var (
	// ErrInvalid wraps every rejection of the input itself (duplicate
	// names, negative requests, a container on an unknown host, ...).
	ErrInvalid = errors.New("invalid placement input")
	// ErrUnknownHost: Evacuate was given a host that is not in the list.
	ErrUnknownHost = errors.New("unknown host")
	// ErrNoSchedulableHost: nothing can receive a container.
	ErrNoSchedulableHost = errors.New("no schedulable host")
)

// UnplacedError is returned, with a plan for everything else, when some
// containers fit nowhere. The plan is still valid to execute.
type UnplacedError struct {
	Unplaced []Unplaced
}

func (e *UnplacedError) Error() string {
	var b strings.Builder
	for i, u := range e.Unplaced {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "container %s: %s", u.Container, u.Reason)
	}
	return b.String()
}
