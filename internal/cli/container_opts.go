package cli

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/containerflow/containerflow/internal/agent"
	"github.com/containerflow/containerflow/internal/runtime"
)

// runOpts are `container run`'s options beyond name, host and address,
// named as docker and podman name them.
type runOpts struct {
	image            string
	user, memory     string
	workdir          string
	cpus             float64
	ulimits, volumes []string
	envFiles         []string
	logMaxSize       string
	logMaxFiles      int
}

func (o *runOpts) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.image, "image", "", "run from an image loaded with `cflow image load` (ref or digest); CMD then defaults to the image's")
	fs.StringVarP(&o.user, "user", "u", "", "run as UID[:GID] (numeric)")
	fs.StringVarP(&o.workdir, "workdir", "w", "", "working directory inside the container")
	fs.StringArrayVar(&o.ulimits, "ulimit", nil, "resource limit NAME=SOFT[:HARD], e.g. nofile=20000 (repeatable; default nofile = the agent's own hard limit)")
	fs.StringArrayVarP(&o.volumes, "volume", "v", nil, "bind-mount host path SRC at DST, SRC:DST[:ro] (repeatable; a migration needs SRC on the destination too)")
	fs.StringVarP(&o.memory, "memory", "m", "", "memory request and limit, e.g. 512m (counts against the host's capacity; cgroup limit)")
	fs.Float64Var(&o.cpus, "cpus", 0, "CPU request and limit in CPUs, e.g. 0.5 (counts against the host's capacity; cgroup CFS quota)")
	// The and Kubernetes' spelling; the same value.
	fs.Float64Var(&o.cpus, "cpu", 0, "alias of --cpus")
	fs.StringVar(&o.logMaxSize, "log-max-size", "", "size of each of the container's log files, e.g. 512k, 10m (default 10m)")
	fs.IntVar(&o.logMaxFiles, "log-max-files", 0, "log files kept per host, the one being written included (default 3)")
	fs.StringArrayVar(&o.envFiles, "env-file", nil, "read KEY=VALUE lines from a file (repeatable; # comments and blank lines skipped)")
}

// apply puts the options into spec; every value is checked here so a
// typo fails before anything is sent.
func (o *runOpts) apply(spec *agent.ContainerSpec) error {
	spec.Image = o.image
	if o.image == "" && len(spec.Args) == 0 {
		return fmt.Errorf("a command is needed (after --), or an --image that has one")
	}
	if o.user != "" {
		u, err := runtime.ParseUser(o.user)
		if err != nil {
			return fmt.Errorf("--user: %w", err)
		}
		spec.User = u
	}
	spec.Cwd = o.workdir
	for _, s := range o.ulimits {
		l, err := runtime.ParseUlimit(s)
		if err != nil {
			return fmt.Errorf("--ulimit: %w", err)
		}
		spec.Rlimits = append(spec.Rlimits, l)
	}
	for _, s := range o.volumes {
		v, err := runtime.ParseVolume(s)
		if err != nil {
			return fmt.Errorf("--volume: %w", err)
		}
		spec.Volumes = append(spec.Volumes, v)
	}
	if o.memory != "" {
		m, err := runtime.ParseBytes(o.memory)
		if err != nil {
			return fmt.Errorf("--memory: %w", err)
		}
		spec.Resources.MemoryBytes = m
	}
	spec.Resources.CPUs = o.cpus
	if o.logMaxSize != "" {
		n, err := runtime.ParseBytes(o.logMaxSize)
		if err != nil {
			return fmt.Errorf("--log-max-size: %w", err)
		}
		spec.LogMaxBytes = n
	}
	spec.LogFiles = o.logMaxFiles
	var fileEnv []string
	for _, f := range o.envFiles {
		env, err := readEnvFile(f)
		if err != nil {
			return fmt.Errorf("--env-file: %w", err)
		}
		fileEnv = append(fileEnv, env...)
	}
	// --env wins over a file, as in docker.
	spec.Env = append(fileEnv, spec.Env...)
	return nil
}

func readEnvFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var env []string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, _, ok := strings.Cut(line, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("%s:%d: %q is not KEY=VALUE", path, n, line)
		}
		env = append(env, line)
	}
	return env, sc.Err()
}
