// Package results owns the files an experiment leaves in its run
// directory, so the experiment that writes them and the plots and reports
// that read them agree on one definition:
//
//   - metrics.csv: one row per collection interval; the first 19 columns
//     are exactly the seed's (its plotting scripts read ours), the rest are
//     this project's additional measurements. A scrape that failed leaves
//     its columns empty, never zero.
//   - migration_timing_N.txt / .json: the seed's key=value timing record
//     of migration N (internal/migration.Record).
//   - summary.json: the run's outcome and distributions (Summary).
package results
