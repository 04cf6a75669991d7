/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * maps.h — every table of the switch, and nothing else.
 *
 * All maps are pinned by name: when Go loads with a pin directory the maps
 * are created there once and re-used by every later load, so a controller
 * restart finds the same tables (and the program attached to them) still
 * forwarding. Go clears the pinning flag when no pin directory is given.
 */
#pragma once

/* Switch port number -> egress interface. An array so that flooding can
 * walk it with a bounded loop; slot 0 is unused. Written by AttachPort. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct port_info);
	__uint(max_entries, MAX_PORTS + 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ports SEC(".maps");

/* Ingress ifindex -> switch port number, the reverse of ports, so the
 * program knows which port a packet came in through (counters, flooding). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, MAX_PORTS + 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} port_by_ifindex SEC(".maps");

/* Per-port counters, per CPU so the fast path never contends; slot 0
 * counts ingress from interfaces that are not configured ports. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct port_counters);
	__uint(max_entries, MAX_PORTS + 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} port_stats SEC(".maps");

/* The address table: IPv4 (network order) -> forward + arp_forward views.
 * One element per address is what makes a move (forward and arp_forward
 * together) a single atomic update: a hash map update replaces the element
 * as a whole, so a packet sees either the old or the new entry, never a mix.
 * The program copies what it needs out of the element at once. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __be32);
	__type(value, struct addr_entry);
	__uint(max_entries, MAX_ADDRESSES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} addresses SEC(".maps");

/* Counters of the address table, a separate per-CPU map with the same key
 * so that replacing an address entry (a move) keeps its counters, and so
 * counting never writes into the element that carries the forwarding
 * decision. Go creates and deletes these elements with the address. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__type(key, __be32);
	__type(value, struct addr_counters);
	__uint(max_entries, MAX_ADDRESSES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} addr_stats SEC(".maps");

/* Load-balanced services: {VIP, L4 port, protocol} -> members. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct svc_key);
	__type(value, struct service);
	__uint(max_entries, MAX_SERVICES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} services SEC(".maps");

/* Counters per service; Go creates and deletes them with the service. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__type(key, struct svc_key);
	__type(value, struct svc_counters);
	__uint(max_entries, MAX_SERVICES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} svc_stats SEC(".maps");

/* Connection table: client-side 5-tuple of a flow that entered through a
 * VIP -> the member it was given. Consulted before the member choice, so a
 * flow keeps its member whatever happens to the service's member list. LRU:
 * idle flows are evicted when it fills up instead of refusing new ones. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct flow_key);
	__type(value, struct ct_entry);
	__uint(max_entries, MAX_FLOWS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} conntrack SEC(".maps");

/* Reverse NAT: member-side 5-tuple of a VIP flow -> the VIP and port to
 * put back as source of the member's replies. Only VIP flows create entries,
 * so a client talking to a member's own address is never rewritten. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct flow_key);
	__type(value, struct rev_entry);
	__uint(max_entries, MAX_FLOWS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} reverse_nat SEC(".maps");

/* Run-time configuration, one element. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct dp_config);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} config SEC(".maps");

/* Counters by reason (drops and notable events), one per-CPU element. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct global_counters);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} global_stats SEC(".maps");
