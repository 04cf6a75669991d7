/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * forward.h — the forward view of the address table and the redirect to a
 * switch port.
 */
#pragma once

#include "common.h"
#include "parse.h"
#include "rewrite.h"
#include "stats.h"

/* port_ifindex returns the interface of a switch port, 0 if not attached.
 * Array lookups bound-check the port for us. */
static __always_inline __u32 port_ifindex(__u32 port)
{
	struct port_info *pi = bpf_map_lookup_elem(&ports, &port);

	return pi ? pi->ifindex : 0;
}

/* to_port sends the packet out of a switch port (or drops it, counted, when
 * the port is not attached). */
static __always_inline int to_port(struct __sk_buff *skb, __u32 port, __u32 in_port)
{
	__u32 ifindex = port_ifindex(port);

	if (!ifindex) {
		STAT_INC(port_down);
		return drop(in_port);
	}
	count_tx(port, skb->len);
	return bpf_redirect(ifindex, 0);
}

/* forward_ipv4 sends an IPv4 packet where the forward view of its
 * destination says. With a destination MAC the switch acts as a router
 * (rewrite the MAC, TTL - 1); without one it forwards the frame untouched,
 * as a learning switch would. */
static __always_inline int forward_ipv4(struct __sk_buff *skb, const struct pkt *p,
					__u32 in_port)
{
	struct addr_entry *e = bpf_map_lookup_elem(&addresses, &p->daddr);
	__u8 mac[ETH_ALEN];

	if (!e || !e->has_fwd) {
		STAT_INC(no_route);
		return drop(in_port);
	}
	/* Copy the decision out of the element at once: Go may replace it
	 * any time, and we want one consistent version. */
	__u32 port = e->fwd_port;
	__u8 route = e->has_dst_mac;
	__builtin_memcpy(mac, e->dst_mac, ETH_ALEN);

	__u32 ifindex = port_ifindex(port);
	if (!ifindex) {
		STAT_INC(port_down);
		return drop(in_port);
	}

	if (route) {
		if (p->ttl <= 1) {
			/* No ICMP time-exceeded is generated; the drop is
			 * counted. */
			STAT_INC(ttl_exceeded);
			return drop(in_port);
		}
		if (dec_ttl(skb, p) < 0 || set_dst_mac(skb, mac) < 0) {
			STAT_INC(malformed);
			return drop(in_port);
		}
		STAT_INC(routed);
	} else {
		STAT_INC(switched);
	}
	count_addr_fwd(p->daddr, skb->len);
	count_tx(port, skb->len);
	return bpf_redirect(ifindex, 0);
}
