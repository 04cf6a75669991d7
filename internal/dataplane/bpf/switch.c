// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * switch.c — the containerflow switch: one tc classifier attached at the
 * ingress of every switch port. It parses the frame, applies the tables and
 * either redirects it to the egress port or drops it; nothing is ever
 * passed up to the switch's own stack.
 *
 *   ARP   -> arp_forward view / proxy ARP / flood      (arp.h)
 *   IPv4  -> load balancer: DNAT to member or SNAT of a member's reply (lb.h)
 *         -> forward view: egress port, optional MAC rewrite + TTL (forward.h)
 *   other -> drop, counted as non_ip
 *
 * Sizes: consts.h. Tables: maps.h. Layouts: structs.h.
 */
#include "common.h"
#include "stats.h"
#include "parse.h"
#include "rewrite.h"
#include "forward.h"
#include "arp.h"
#include "lb.h"

char __license[] SEC("license") = "Dual BSD/GPL";

/*
 * Types that only Go needs: anchored here so that clang emits their BTF and
 * bpf2go can generate Go constants from them.
 */
struct btf_anchor {
	enum dp_limits limits;
	enum member_state member_state;
};
const struct btf_anchor *unused_btf_anchor __attribute__((unused));

static __always_inline int handle_ipv4(struct __sk_buff *skb, __u32 in_port)
{
	struct pkt p = {};

	if (parse_ipv4(skb, &p) < 0) {
		STAT_INC(malformed);
		return drop(in_port);
	}
	if (p.is_frag)
		STAT_INC(fragments);

	int rc = lb_to_vip(skb, &p);
	if (rc == LB_MISS)
		rc = lb_from_member(skb, &p);
	if (rc == LB_DROP)
		return drop(in_port);

	return forward_ipv4(skb, &p, in_port);
}

SEC("tc")
int switch_ingress(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	__u32 *portp = bpf_map_lookup_elem(&port_by_ifindex, &ifindex);
	__u32 in_port = portp ? *portp : 0;
	struct ethhdr eth;

	if (!portp)
		STAT_INC(unknown_ingress);
	count_rx(in_port, skb->len);

	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) < 0) {
		STAT_INC(malformed);
		return drop(in_port);
	}

	switch (eth.h_proto) {
	case bpf_htons(ETH_P_IP):
		return handle_ipv4(skb, in_port);
	case bpf_htons(ETH_P_ARP):
		return handle_arp(skb, &eth, in_port);
	default:
		STAT_INC(non_ip);
		return drop(in_port);
	}
}
