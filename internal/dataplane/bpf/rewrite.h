/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * rewrite.h — header rewrites with incremental checksum updates.
 *
 * The csum helpers are used rather than recomputing: they also handle
 * CHECKSUM_PARTIAL packets (locally generated traffic whose L4 checksum
 * holds only the pseudo-header sum until the device finishes it) and keep
 * skb->csum right for CHECKSUM_COMPLETE, which a hand-written update
 * cannot see.
 */
#pragma once

#include "common.h"
#include "parse.h"

/* l4_csum_off returns the offset of the L4 checksum that covers the IPv4
 * pseudo-header (TCP, UDP), or 0 when there is none (ICMP). */
static __always_inline __u32 l4_csum_off(const struct pkt *p, __u64 *flags)
{
	switch (p->proto) {
	case IPPROTO_TCP:
		*flags = 0;
		return p->l4_off + offsetof(struct tcphdr, check);
	case IPPROTO_UDP:
		/* A zero UDP checksum means "none" and must stay zero; a
		 * computed zero must be sent as 0xffff. */
		*flags = BPF_F_MARK_MANGLED_0;
		return p->l4_off + offsetof(struct udphdr, check);
	}
	*flags = 0;
	return 0;
}

/* set_ipv4_addr replaces the source or destination address (field is
 * offsetof(struct iphdr, saddr/daddr)) and fixes the IPv4 and, when the
 * packet is not a fragment, the L4 checksum. */
static __always_inline int set_ipv4_addr(struct __sk_buff *skb, const struct pkt *p,
					 __u32 field, __be32 from, __be32 to)
{
	__u64 flags;
	__u32 csum = p->has_l4 ? l4_csum_off(p, &flags) : 0;

	if (from == to)
		return 0;
	if (csum && bpf_l4_csum_replace(skb, csum, from, to,
					flags | BPF_F_PSEUDO_HDR | sizeof(to)) < 0)
		return -1;
	if (bpf_l3_csum_replace(skb, p->l3_off + offsetof(struct iphdr, check),
				from, to, sizeof(to)) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, p->l3_off + field, &to, sizeof(to), 0);
}

/* set_l4_port replaces a TCP/UDP port (field is offsetof(struct tcphdr,
 * source/dest), the same for UDP) and fixes the L4 checksum. */
static __always_inline int set_l4_port(struct __sk_buff *skb, const struct pkt *p,
				       __u32 field, __be16 from, __be16 to)
{
	__u64 flags;
	__u32 csum = l4_csum_off(p, &flags);

	if (from == to)
		return 0;
	if (!csum)
		return -1;
	if (bpf_l4_csum_replace(skb, csum, from, to, flags | sizeof(to)) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, p->l4_off + field, &to, sizeof(to), 0);
}

/* dec_ttl lowers the TTL by one; the caller has checked that it is > 1.
 * TTL and protocol share one 16-bit checksum word. */
static __always_inline int dec_ttl(struct __sk_buff *skb, const struct pkt *p)
{
	__u8 ttl = p->ttl - 1;
	__be16 from = bpf_htons(((__u16)p->ttl << 8) | p->proto);
	__be16 to = bpf_htons(((__u16)ttl << 8) | p->proto);

	if (bpf_l3_csum_replace(skb, p->l3_off + offsetof(struct iphdr, check),
				from, to, sizeof(to)) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, p->l3_off + offsetof(struct iphdr, ttl),
				   &ttl, sizeof(ttl), 0);
}

static __always_inline int set_dst_mac(struct __sk_buff *skb, const __u8 *mac)
{
	return bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_dest), mac, ETH_ALEN, 0);
}
