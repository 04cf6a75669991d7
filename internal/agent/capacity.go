package agent

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// A host has a capacity (CPUs and memory); each container requests part of
// it with its resources (--cpus, --memory), which are also its cgroup
// limits. The agent admits a container — to run, or as the destination of
// a migration — only if its requests fit in what is free: the capacity
// less the requests of the containers it holds, incoming ones included.
// A container that sets no resources requests 0 and always fits. Usage
// plays no part in admission: requests are promises the host keeps, usage
// is what the planner and the operator look at (usage.go).

// Amount is an amount of the resources containers request: CPUs in cores
// (fractions allowed) and memory in bytes.
type Amount struct {
	CPUs        float64 `json:"cpus"`
	MemoryBytes int64   `json:"memory_bytes"`
}

// milliCPUs is CPUs in thousandths, so that sums of fractions such as 0.1
// and 0.2 compare exactly against a capacity.
func milliCPUs(cpus float64) int64 { return int64(math.Round(cpus * 1000)) }

func fromMilli(m int64, mem int64) Amount {
	return Amount{CPUs: float64(m) / 1000, MemoryBytes: mem}
}

func (x Amount) String() string {
	return strconv.FormatFloat(x.CPUs, 'f', -1, 64) + " CPUs and " + formatBytes(x.MemoryBytes)
}

// formatBytes writes a size the way --memory reads it.
func formatBytes(n int64) string {
	neg := ""
	if n < 0 {
		neg, n = "-", -n
	}
	for _, u := range []struct {
		unit string
		size int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size {
			v := math.Round(float64(n)/float64(u.size)*100) / 100
			return neg + strconv.FormatFloat(v, 'f', -1, 64) + " " + u.unit
		}
	}
	return neg + strconv.FormatInt(n, 10) + " bytes"
}

// machineCapacity is what this machine has: its CPUs (as the scheduler
// lets this process use them) and its memory.
func machineCapacity() Amount {
	c := Amount{CPUs: float64(runtime.NumCPU())}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				c.MemoryBytes = kb << 10
			}
		}
	}
	return c
}

// resolveCapacity fills what the configuration leaves zero with the
// machine's.
func resolveCapacity(c Amount) (Amount, error) {
	if c.CPUs < 0 || c.MemoryBytes < 0 {
		return Amount{}, fmt.Errorf("%w: capacity %s: negative", ErrBadRequest, c)
	}
	m := machineCapacity()
	if c.CPUs == 0 {
		c.CPUs = m.CPUs
	}
	if c.MemoryBytes == 0 {
		c.MemoryBytes = m.MemoryBytes
	}
	return c, nil
}

// requestOf is what a container holds of its host's capacity.
func requestOf(s ContainerSpec) Amount {
	return Amount{CPUs: s.Resources.CPUs, MemoryBytes: s.Resources.MemoryBytes}
}

// holdsCapacity says whether a container's requests count against its
// host. An exited container that will not start again, or one being
// removed, holds nothing; one the agent is about to restart still does,
// or its restart could find its room taken.
func holdsCapacity(info ContainerInfo) bool {
	switch info.State {
	case stateRemoving:
		return false
	case StateExited:
		return restartsAfter(info.Restart, info.Exit, info.Restarts)
	}
	return true
}

// requestedLocked sums the requests of the containers that hold capacity
// here; a.mu is held.
func (a *Agent) requestedLocked() (milli int64, mem int64) {
	for _, e := range a.containers {
		if holdsCapacity(e.info) {
			milli += milliCPUs(e.info.Resources.CPUs)
			mem += e.info.Resources.MemoryBytes
		}
	}
	return milli, mem
}

// requested is the sum of the requests of the containers held here.
func (a *Agent) requested() Amount {
	a.mu.Lock()
	defer a.mu.Unlock()
	return fromMilli(a.requestedLocked())
}

// fitsLocked refuses a container whose requests exceed what is free; a.mu
// is held. A resource the container does not request is not checked, so
// a container without requests fits even on an over-committed host (one
// whose capacity was lowered under its containers).
func (a *Agent) fitsLocked(s ContainerSpec) error {
	reqMilli, reqMem := milliCPUs(s.Resources.CPUs), s.Resources.MemoryBytes
	usedMilli, usedMem := a.requestedLocked()
	freeMilli := milliCPUs(a.cfg.Capacity.CPUs) - usedMilli
	freeMem := a.cfg.Capacity.MemoryBytes - usedMem
	if (reqMilli == 0 || reqMilli <= freeMilli) && (reqMem == 0 || reqMem <= freeMem) {
		return nil
	}
	return &CapacityError{Host: a.cfg.Name, Container: s.Name, Request: requestOf(s),
		Free: fromMilli(freeMilli, freeMem), Capacity: a.cfg.Capacity}
}

// ReasonCapacity is the "reason" of an answer refusing a container for
// lack of capacity (409), on a run, a migration's prepare, and the
// migrate call whose destination refused.
const ReasonCapacity = "insufficient_capacity"

// CapacityError says a host cannot take a container: what it asked and
// what is free. It is a conflict (409): the same request may fit later.
type CapacityError struct {
	Host      string `json:"host"`
	Container string `json:"container"`
	Request   Amount `json:"request"`
	Free      Amount `json:"free"`
	Capacity  Amount `json:"capacity"`
}

func (e *CapacityError) Error() string {
	return fmt.Sprintf("insufficient capacity: %s has %s free (capacity %s), container %s requests %s",
		e.Host, e.Free, e.Capacity, e.Container, e.Request)
}

// Is makes a capacity refusal an ErrConflict for the API's status.
func (e *CapacityError) Is(target error) bool { return target == ErrConflict }

// capacityRefusal returns the capacity refusal in an agent's answer (a
// migration's prepare), if that is what it was.
func capacityRefusal(err error) *CapacityError {
	var ae *APIError
	if errors.As(err, &ae) && ae.Refused != nil {
		return ae.Refused
	}
	return nil
}

// refusedError is a migration rolled back because its destination had no
// room: the record's error, carrying the refusal for the API's answer.
type refusedError struct {
	err      error
	capacity *CapacityError
}

func (e *refusedError) Error() string   { return e.err.Error() }
func (e *refusedError) Unwrap() []error { return []error{e.err, e.capacity} }
