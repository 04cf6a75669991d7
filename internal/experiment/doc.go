// Package experiment runs the seed's experiment end to end on the emulated
// testbed — the Go counterpart of its run_experiment.sh:
//
//	testbed up (switch, one agent per host)
//	-> workload server in a container on hostA at a fixed IP
//	-> load generator in the client node
//	-> collector scraping both every second into metrics.csv
//	-> steady state, then N migrations alternating hostA->hostB and back,
//	   each followed by the post-migration wait
//	-> timing files, summary.json, plots, report.md
//	-> testbed down, always (also on failure or Ctrl-C).
//
// The collector runs in this process and reaches the server's metrics
// through the data network from inside the client node, as the seed's
// collector reached them through the macvlan shim; the load generator is a
// separate process in the client node (the cflow binary's `loadgen`), so
// its measurements are the client's. What the files contain is defined by
// internal/results; the plots by internal/plot.
package experiment
