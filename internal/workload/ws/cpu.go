package ws

import (
	"context"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// cpuSampler turns /proc/self/stat's cumulative CPU time into a percentage
// over the last second. It samples on its own clock rather than per
// scrape, so two scrapers (the collector and a Prometheus) do not split
// each other's intervals.
type cpuSampler struct {
	mu      sync.Mutex
	lastCPU float64 // seconds
	lastAt  time.Time
	pct     float64
}

func newCPUSampler() *cpuSampler {
	return &cpuSampler{lastCPU: procCPUSeconds(), lastAt: time.Now()}
}

func (c *cpuSampler) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.sample()
		}
	}
}

func (c *cpuSampler) sample() {
	now, cpu := time.Now(), procCPUSeconds()
	c.mu.Lock()
	defer c.mu.Unlock()
	if dt := now.Sub(c.lastAt).Seconds(); dt > 0 && cpu >= c.lastCPU {
		c.pct = (cpu - c.lastCPU) / dt * 100
	}
	c.lastCPU, c.lastAt = cpu, now
}

func (c *cpuSampler) percent() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return math.Round(c.pct*100) / 100
}

// procCPUSeconds returns utime+stime of this process in seconds.
func procCPUSeconds() float64 {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	u, s, ok := parseStatCPU(string(b))
	if !ok {
		return 0
	}
	return float64(u+s) / clockTicks
}

// parseStatCPU extracts utime and stime (fields 14 and 15) from a
// /proc/PID/stat line. The command name (field 2) may contain spaces and
// parentheses, so fields are counted after its last ')'.
func parseStatCPU(stat string) (utime, stime uint64, ok bool) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime is field 14 -> f[11].
	if len(f) < 13 {
		return 0, 0, false
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	return u, s, err1 == nil && err2 == nil
}

// rssMB reads the resident set size from /proc/self/statm.
func rssMB() float64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseFloat(f[1], 64)
	if err != nil {
		return 0
	}
	return pages * float64(os.Getpagesize()) / (1 << 20)
}
