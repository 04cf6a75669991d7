package cgroupfs

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The machine's own root cgroups: the files the kernel writes, not a
// transcription of them.
func TestReadsTheKernelsRootCgroups(t *testing.T) {
	cpu, mem := "/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/memory"
	if _, err := os.Stat(filepath.Join(cpu, "cpuacct.usage")); err != nil {
		t.Skip("no cgroup v1 cpuacct hierarchy here")
	}
	t0, err := CPUTime(cpu)
	if err != nil || t0 <= 0 {
		t.Fatalf("cpu time %v, %v", t0, err)
	}
	for end := time.Now().Add(20 * time.Millisecond); time.Now().Before(end); {
	}
	if t1, err := CPUTime(cpu); err != nil || t1 <= t0 {
		t.Errorf("cpu time did not grow while this test spun: %v then %v (%v)", t0, t1, err)
	}
	m, err := ReadMemory(mem)
	if err != nil || m.Usage <= 0 || m.WorkingSet <= 0 || m.WorkingSet > m.Usage {
		t.Errorf("memory %+v, %v", m, err)
	}
}

// cgroup v2's names for the same figures.
func TestReadsV2Files(t *testing.T) {
	d := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(d, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("cpu.stat", "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n")
	write("memory.current", "10485760\n")
	write("memory.stat", "anon 4194304\nfile 6291456\nactive_file 2097152\ninactive_file 4194304\n")
	if c, err := CPUTime(d); err != nil || c != 1500*time.Millisecond {
		t.Errorf("cpu time %v, %v", c, err)
	}
	if m, err := ReadMemory(d); err != nil || m.Usage != 10<<20 || m.WorkingSet != 6<<20 {
		t.Errorf("memory %+v, %v", m, err)
	}
	if _, err := CPUTime(t.TempDir()); err == nil {
		t.Error("no error for a directory without cgroup files")
	}
}
