package agent

import (
	"sync"
	"time"
)

// DefaultUsageInterval is how often the agent samples its containers' use
// unless configured otherwise. A CPU rate needs two samples, so a read
// would otherwise wait an interval; sampling in the background lets GET
// /v1/host, /v1/containers and /metrics answer at once. Reading three
// cgroup files per container every 2 s costs next to nothing.
const DefaultUsageInterval = 2 * time.Second

// usageSampler keeps the last sample of each running container's use.
type usageSampler struct {
	mu   sync.Mutex
	last map[string]usageSample // replaced whole each round, never changed
	at   time.Time              // of the last round

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

type usageSample struct {
	pid     int // the init sampled: another one (a restart, a restore) has a new cgroup and counter
	taken   time.Time
	cpuTime time.Duration // cumulative, from the cgroup
	memory  int64         // working set
	cpus    float64       // cores used over the interval up to taken
	rated   bool          // cpus is known: two samples of the same init
}

// usage returns a container's use at the last sample, and whether there
// is one with a CPU rate.
func (u *usageSampler) usage(name string) (usageSample, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	s, ok := u.last[name]
	return s, ok && s.rated
}

// snapshot returns every container's last sample.
func (u *usageSampler) snapshot() (map[string]usageSample, time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last, u.at
}

// startSampling samples now, then every interval until close.
func (a *Agent) startSampling(interval time.Duration) {
	u := a.usage
	u.stop, u.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(u.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			a.sampleUsage()
			select {
			case <-u.stop:
				return
			case <-t.C:
			}
		}
	}()
}

func (u *usageSampler) close() {
	u.stopOnce.Do(func() {
		if u.stop != nil {
			close(u.stop)
			<-u.done
		}
	})
}

// sampleUsage takes one round of samples. Only running containers are
// sampled (a migrating one runs until its freeze): an incoming copy is
// the destination's until committed, an exited one uses nothing.
func (a *Agent) sampleUsage() {
	type target struct {
		name string
		pid  int
	}
	var ts []target
	a.mu.Lock()
	for name, e := range a.containers {
		if (e.info.State == StateRunning || e.info.State == StateMigrating) && e.info.Pid > 0 {
			ts = append(ts, target{name, e.info.Pid})
		}
	}
	a.mu.Unlock()
	prev, _ := a.usage.snapshot()
	next := make(map[string]usageSample, len(ts))
	for _, t := range ts {
		u, err := a.rt.Usage(t.name)
		if err != nil {
			continue // gone meanwhile, or not yet in its cgroups
		}
		now := time.Now()
		s := usageSample{pid: t.pid, taken: now, cpuTime: u.CPUTime, memory: u.Memory.WorkingSet}
		if p, ok := prev[t.name]; ok && p.pid == t.pid && u.CPUTime >= p.cpuTime && now.After(p.taken) {
			s.cpus = (u.CPUTime - p.cpuTime).Seconds() / now.Sub(p.taken).Seconds()
			s.rated = true
		}
		next[t.name] = s
	}
	a.usage.mu.Lock()
	a.usage.last, a.usage.at = next, time.Now().UTC()
	a.usage.mu.Unlock()
}

// withUsage fills in what a container view adds to the stored info: its
// requests and its last measured use.
func (a *Agent) withUsage(info ContainerInfo) ContainerInfo {
	info.Requests = requestOf(info.ContainerSpec)
	if s, ok := a.usage.usage(info.Name); ok && (info.State == StateRunning || info.State == StateMigrating) {
		info.Usage = &Amount{CPUs: s.cpus, MemoryBytes: s.memory}
	}
	return info
}

// used sums the last measured use of the running containers.
func (a *Agent) used() (Amount, time.Time) {
	last, at := a.usage.snapshot()
	var sum Amount
	for _, s := range last {
		if s.rated {
			sum.CPUs += s.cpus
		}
		sum.MemoryBytes += s.memory
	}
	return sum, at
}
