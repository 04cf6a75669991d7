/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * stats.h — counter updates. All counter maps are per CPU, so plain
 * increments are race-free and cost no atomic instructions.
 */
#pragma once

#include "common.h"

/* STAT_INC bumps one reason counter of global_stats. */
#define STAT_INC(field)                                                      \
	do {                                                                     \
		__u32 _k = 0;                                                        \
		struct global_counters *_s = bpf_map_lookup_elem(&global_stats, &_k);   \
		if (_s)                                                              \
			_s->field++;                                                     \
	} while (0)

static __always_inline void count_rx(__u32 port, __u32 len)
{
	struct port_counters *s = bpf_map_lookup_elem(&port_stats, &port);

	if (s) {
		s->rx_packets++;
		s->rx_bytes += len;
	}
}

static __always_inline void count_tx(__u32 port, __u32 len)
{
	struct port_counters *s = bpf_map_lookup_elem(&port_stats, &port);

	if (s) {
		s->tx_packets++;
		s->tx_bytes += len;
	}
}

static __always_inline void count_rx_drop(__u32 port)
{
	struct port_counters *s = bpf_map_lookup_elem(&port_stats, &port);

	if (s)
		s->rx_dropped++;
}

/* drop counts a dropped frame against its ingress port; the caller has
 * already bumped the reason counter. Returns the verdict to hand back. */
static __always_inline int drop(__u32 in_port)
{
	count_rx_drop(in_port);
	return TC_ACT_SHOT;
}

static __always_inline void count_addr_fwd(__be32 addr, __u32 len)
{
	struct addr_counters *s = bpf_map_lookup_elem(&addr_stats, &addr);

	if (s) {
		s->fwd_packets++;
		s->fwd_bytes += len;
	}
}

static __always_inline void count_addr_arp(__be32 addr)
{
	struct addr_counters *s = bpf_map_lookup_elem(&addr_stats, &addr);

	if (s)
		s->arp_packets++;
}
