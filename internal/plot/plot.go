package plot

import (
	"errors"
	"fmt"
	"strconv"
)

type def struct {
	name, title, caption string
	draw                 func(r *run, dir string, d def) error
}

// The twelve plots, in the seed's order.
var defs = []def{
	{"ws_rtt", "Application-layer RTT (client-measured)",
		"Round-trip time of the load generator's pings (every 100 ms per connection), as percentiles over each 1 s interval, log scale. A gap means no echo arrived in that interval; the grey line includes echoes over the 1 s cap that the seed's figures leave out.", drawRTT},
	{"ws_jitter", "Application-layer jitter (client-measured)",
		"Mean absolute difference between consecutive RTT samples of a connection, per 1 s interval, log scale.", drawJitter},
	{"throughput", "Throughput",
		"Payload rate per 1 s interval: what the server wrote, what the clients received, and the clients' pings the server read. A dip at a migration is the freeze; the rate catches up right after, as queued data is delivered.", drawThroughput},
	{"connection_health", "Connection health",
		"Top: WebSocket connections up, as the clients and the server count them, with cumulative drops and lost frames (both should stay at 0). Bottom: the longest gap between two data frames on any connection in each interval — the outage a client feels.", drawHealth},
	{"migration_timing", "Migration phases (mean ± sd)",
		"Mean duration of each phase of the successful migrations, with one standard deviation. Checkpoint includes the freeze; resume is unlocking the destination. Together they make up the time to ready.", drawPhaseMeans},
	{"migration_bars", "Per-migration phase breakdown",
		"Each migration's phases stacked, with its time to ready on top; × marks a failed migration. Migrations alternate hostA → hostB and back (after a failed one the container stays where it was, so the next one goes the same way).", drawPhaseBars},
	{"container_resources", "Workload server resources",
		"CPU (percent of one core, over each second) and memory of the server process in the container, as it reports them. Gaps are intervals in which its metrics could not be read (it was frozen).", drawResources},
	{"rtt_by_location", "RTT by server location",
		"Per-interval median RTT, grouped by the host that ran the container, and the intervals during or within 2 s after a migration.", drawRTTByLocation},
	{"phase_variability", "Migration phase variability",
		"Distribution of each phase's duration across the successful migrations (box: quartiles, whiskers: 1.5 IQR; dots: each migration).", drawPhaseBoxes},
	{"downtime_cdf", "Migration downtime CDF",
		"Fraction of successful migrations whose downtime was at most x: client-visible (the longest frame gap on any connection) and the agents' time to ready.", drawDowntimeCDF},
	{"ensemble_rtt_recovery", "Ensemble RTT recovery",
		"All migrations aligned at their start (t = 0): each migration's per-interval median RTT (thin), their mean (bold) and interquartile range (band).", drawEnsembleRTT},
	{"ensemble_throughput_recovery", "Ensemble throughput recovery",
		"All migrations aligned at their start (t = 0): the rate at which the clients received data, per migration (thin), mean (bold) and interquartile range (band).", drawEnsembleThroughput},
}

// Names lists the plots, in order.
func Names() []string {
	out := make([]string, len(defs))
	for i, d := range defs {
		out[i] = d.name
	}
	return out
}

// Title returns a plot's title.
func Title(name string) string {
	for _, d := range defs {
		if d.name == name {
			return d.title
		}
	}
	return name
}

// Caption says how to read a plot.
func Caption(name string) string {
	for _, d := range defs {
		if d.name == name {
			return d.caption
		}
	}
	return ""
}

// All draws every plot into dir from the run's files and returns the
// names written. A plot that fails does not stop the others.
func All(dir string) ([]string, error) {
	r, err := load(dir)
	if err != nil {
		return nil, fmt.Errorf("plots: %w", err)
	}
	var names []string
	var errs []error
	for _, d := range defs {
		if err := drawSafely(r, dir, d); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", d.name, err))
			continue
		}
		names = append(names, d.name)
	}
	return names, errors.Join(errs...)
}

func itoa(n int) string { return strconv.Itoa(n) }

// drawSafely turns a panic of the plotting library (it panics on some
// degenerate data) into an error, so one bad plot does not take the run's
// other outputs with it.
func drawSafely(r *run, dir string, d def) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("plotting failed: %v", p)
		}
	}()
	return d.draw(r, dir, d)
}
