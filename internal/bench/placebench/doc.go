// Package placebench is `cflow bench place`: it generates a cluster of
// hosts with mixed capacities and containers with requests (seeded), and
// times the planner of internal/placement on it: PlaceAll of every
// container, a Rebalance after some hosts are made hot, and the
// evacuation of the busiest host. Every plan is replayed step by step
// here, independently of the planner, to count capacity violations.
package placebench
