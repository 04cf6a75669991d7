// Package plot draws the seed's twelve experiment plots from a run
// directory (metrics.csv, migration_timing_N.txt, and summary.json when
// present), each as PNG (for Markdown), SVG and PDF (vector), with
// gonum/plot — no Python, no matplotlib.
//
// Time-series plots show migrations as shaded spans (from the migration
// request to the agent's answer, widened to stay visible at the scale of
// a long run). A cell the collector left empty (failed scrape, no echo in
// that interval) is a gap in the line, never a zero. Series that are
// absent (a seed CSV has fewer columns) are left out.
package plot
