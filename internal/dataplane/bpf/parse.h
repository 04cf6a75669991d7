/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * parse.h — header parsing. Headers are copied onto the stack with
 * bpf_skb_load_bytes instead of being read through data/data_end pointers:
 * that works for non-linear (GSO) packets too, and rewrites later (which
 * invalidate packet pointers) can then use plain offsets.
 */
#pragma once

#include "common.h"

/* What the fast path needs to know about an IPv4 packet. */
struct pkt {
	__u32 l3_off;   /* offset of the IPv4 header */
	__u32 l4_off;   /* offset of the L4 header (honours IPv4 options) */
	__be32 saddr;
	__be32 daddr;
	__be16 sport;   /* TCP/UDP port, or ICMP echo id (see struct flow_key) */
	__be16 dport;
	__u8 proto;
	__u8 ttl;
	__u8 icmp_type;
	__u8 is_frag;   /* any fragment, first one included */
	__u8 has_l4;    /* ports known: not a fragment, TCP, UDP or ICMP echo */
};

/* The first 8 bytes of an ICMP message, as laid out for echo. */
struct icmp_echo {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be16 id;
	__be16 seq;
};

/* parse_ipv4 fills p for the IPv4 packet behind the Ethernet header.
 * Returns -1 for a packet too short or invalid to be forwarded safely. */
static __always_inline int parse_ipv4(struct __sk_buff *skb, struct pkt *p)
{
	struct iphdr ip;

	p->l3_off = sizeof(struct ethhdr);
	if (bpf_skb_load_bytes(skb, p->l3_off, &ip, sizeof(ip)) < 0)
		return -1;

	/* Read version and IHL from the first byte rather than through the
	 * endian-dependent bitfields of struct iphdr. */
	__u8 vihl = *(__u8 *)&ip;
	__u8 ihl = vihl & 0x0f;
	if ((vihl >> 4) != 4 || ihl < 5)
		return -1;

	p->l4_off = p->l3_off + ihl * 4;
	p->saddr = ip.saddr;
	p->daddr = ip.daddr;
	p->proto = ip.protocol;
	p->ttl = ip.ttl;

	/* Fragments: only the first carries the L4 header, so no fragment is
	 * given L4 treatment (no load balancing, no reverse NAT); they are
	 * forwarded by destination address alone. */
	if (bpf_ntohs(ip.frag_off) & (IPV4_MF | IPV4_OFFSET)) {
		p->is_frag = 1;
		return 0;
	}

	switch (p->proto) {
	case IPPROTO_TCP: {
		struct tcphdr th;

		if (bpf_skb_load_bytes(skb, p->l4_off, &th, sizeof(th)) < 0)
			return -1;
		p->sport = th.source;
		p->dport = th.dest;
		p->has_l4 = 1;
		break;
	}
	case IPPROTO_UDP: {
		struct udphdr uh;

		if (bpf_skb_load_bytes(skb, p->l4_off, &uh, sizeof(uh)) < 0)
			return -1;
		p->sport = uh.source;
		p->dport = uh.dest;
		p->has_l4 = 1;
		break;
	}
	case IPPROTO_ICMP: {
		struct icmp_echo ih;

		if (bpf_skb_load_bytes(skb, p->l4_off, &ih, sizeof(ih)) < 0)
			return -1;
		p->icmp_type = ih.type;
		if (ih.type == ICMP_ECHO_REQUEST) {
			p->sport = ih.id;
			p->has_l4 = 1;
		} else if (ih.type == ICMP_ECHO_REPLY) {
			p->dport = ih.id;
			p->has_l4 = 1;
		}
		break;
	}
	}
	return 0;
}

/* ARP for IPv4 over Ethernet, the only kind the switch forwards. Addresses
 * are byte arrays: the wire layout puts them at unaligned offsets. */
struct arp_ipv4 {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[ETH_ALEN];
	__u8 spa[4];
	__u8 tha[ETH_ALEN];
	__u8 tpa[4];
};

static __always_inline int parse_arp(struct __sk_buff *skb, struct arp_ipv4 *a)
{
	if (bpf_skb_load_bytes(skb, sizeof(struct ethhdr), a, sizeof(*a)) < 0)
		return -1;
	if (a->htype != bpf_htons(ARP_HW_ETHER) || a->ptype != bpf_htons(ETH_P_IP) ||
	    a->hlen != ETH_ALEN || a->plen != 4)
		return -1;
	return 0;
}
