/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * arp.h — the arp_forward view of the address table, proxy ARP and
 * flooding.
 */
#pragma once

#include "common.h"
#include "forward.h"
#include "parse.h"
#include "stats.h"

/* flood sends a copy of the frame out of every attached port but the one it
 * came in through, as a switch does with a frame for an unknown
 * destination, then drops the original. The loop is bounded by MAX_PORTS. */
static __always_inline int flood(struct __sk_buff *skb, __u32 in_port)
{
	__u32 zero = 0;
	struct dp_config *cfg = bpf_map_lookup_elem(&config, &zero);

	if (!cfg || !cfg->flood_arp) {
		STAT_INC(arp_no_route);
		return drop(in_port);
	}

	__u32 in_ifindex = skb->ifindex;
	for (__u32 port = 1; port <= MAX_PORTS; port++) {
		__u32 ifindex = port_ifindex(port);

		if (!ifindex || ifindex == in_ifindex)
			continue;
		if (bpf_clone_redirect(skb, ifindex, 0) == 0)
			count_tx(port, skb->len);
		else
			STAT_INC(flood_failed);
	}
	STAT_INC(arp_flooded);
	return TC_ACT_SHOT;
}

/* arp_reply turns an ARP request into the reply "tpa is at mac" and sends
 * it back out of the port it came in through. */
static __always_inline int arp_reply(struct __sk_buff *skb, const struct ethhdr *eth,
				     const struct arp_ipv4 *req, const __u8 *mac,
				     __u32 in_port)
{
	struct arp_ipv4 rep = *req;
	__u8 l2[2 * ETH_ALEN];

	rep.op = bpf_htons(ARP_OP_REPLY);
	__builtin_memcpy(rep.sha, mac, ETH_ALEN);
	__builtin_memcpy(rep.spa, req->tpa, 4);
	__builtin_memcpy(rep.tha, req->sha, ETH_ALEN);
	__builtin_memcpy(rep.tpa, req->spa, 4);
	__builtin_memcpy(l2, eth->h_source, ETH_ALEN);
	__builtin_memcpy(l2 + ETH_ALEN, mac, ETH_ALEN);

	if (bpf_skb_store_bytes(skb, 0, l2, sizeof(l2), 0) < 0 ||
	    bpf_skb_store_bytes(skb, sizeof(struct ethhdr), &rep, sizeof(rep), 0) < 0) {
		STAT_INC(malformed);
		return drop(in_port);
	}
	STAT_INC(arp_replied);
	count_tx(in_port, skb->len);
	return bpf_redirect(skb->ifindex, 0);
}

static __always_inline int handle_arp(struct __sk_buff *skb, const struct ethhdr *eth,
				      __u32 in_port)
{
	struct arp_ipv4 a;
	__be32 tpa;

	if (parse_arp(skb, &a) < 0) {
		STAT_INC(malformed);
		return drop(in_port);
	}
	__builtin_memcpy(&tpa, a.tpa, sizeof(tpa));

	struct addr_entry *e = bpf_map_lookup_elem(&addresses, &tpa);
	if (e) {
		/* Copy out at once, see forward_ipv4. */
		__u8 reply = e->arp_reply;
		__u8 has_arp = e->has_arp;
		__u32 port = e->arp_port;
		__u8 mac[ETH_ALEN];
		__builtin_memcpy(mac, e->arp_mac, ETH_ALEN);

		if (reply && a.op == bpf_htons(ARP_OP_REQUEST)) {
			count_addr_arp(tpa);
			return arp_reply(skb, eth, &a, mac, in_port);
		}
		/* An entry pointing back at the ingress port is a frame
		 * for the sender's own segment (gratuitous ARP of a host
		 * announcing itself): treat it like an unknown target. */
		if (has_arp && port != in_port) {
			count_addr_arp(tpa);
			STAT_INC(arp_forwarded);
			return to_port(skb, port, in_port);
		}
	}
	return flood(skb, in_port);
}
