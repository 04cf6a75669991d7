/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * lb.h — the load balancer: member choice by rendezvous hashing, the
 * connection table, DNAT towards members and reverse NAT (SNAT) of their
 * replies.
 *
 * A client packet to {VIP, port, proto} of a service first looks for its
 * flow in conntrack; only a flow seen for the first time is given a member,
 * by highest-random-weight hashing of its 5-tuple over the active members.
 * So existing flows keep their member whatever happens to the member list,
 * and a change of the list moves only the new flows that the added or
 * removed member wins or loses. Each VIP flow also owns a reverse_nat
 * entry keyed by the tuple of the member's replies; only packets matching
 * one are rewritten back to the VIP, so direct traffic to a member's own
 * address is never touched.
 */
#pragma once

#include "common.h"
#include "parse.h"
#include "rewrite.h"
#include "stats.h"

enum lb_result {
	LB_MISS = 0, /* not load-balancer traffic: forward as is */
	LB_DONE = 1, /* rewritten: forward by the new destination */
	LB_DROP = 2, /* drop (reason already counted) */
};

/* mix32 is murmur3's finaliser: a cheap bijection with full avalanche. */
static __always_inline __u32 mix32(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

static __always_inline __u32 flow_hash(const struct flow_key *k)
{
	__u32 h = mix32(FLOW_HASH_SEED ^ k->proto);

	h = mix32(h ^ k->saddr);
	h = mix32(h ^ k->daddr);
	return mix32(h ^ (((__u32)k->sport << 16) | k->dport));
}

/* member_score is the rendezvous weight of a member for a flow. It depends
 * on the member's address and port, not on its slot, so the order in which
 * Go lists members does not matter. */
static __always_inline __u32 member_score(__u32 fh, __be32 addr, __be16 port)
{
	return mix32(fh ^ mix32(addr ^ mix32(((__u32)port << 16) | 0x9e37u)));
}

/* pick_member chooses the active member with the highest score. Returns -1
 * when the service has no active member. */
static __always_inline int pick_member(const struct service *svc, const struct flow_key *fk,
				       __be32 *addr, __be16 *port)
{
	__u32 fh = flow_hash(fk);
	__u32 best = 0;
	int found = 0;

	for (int i = 0; i < MAX_MEMBERS; i++) {
		const struct member *m = &svc->members[i];
		__be32 a = m->addr;
		__be16 pt = m->port;

		if (m->state != MEMBER_ACTIVE)
			continue;
		__u32 s = member_score(fh, a, pt);
		if (!found || s > best) {
			found = 1;
			best = s;
			*addr = a;
			*port = pt;
		}
	}
	return found ? 0 : -1;
}

static __always_inline void count_svc(const struct svc_key *k, __u32 len, int new_flow)
{
	struct svc_counters *s = bpf_map_lookup_elem(&svc_stats, k);

	if (s) {
		s->packets++;
		s->bytes += len;
		if (new_flow)
			s->new_flows++;
	}
}

/* lb_to_vip handles a client packet addressed to a service: finds or makes
 * its flow and DNATs it to the flow's member, updating p to match. */
static __always_inline int lb_to_vip(struct __sk_buff *skb, struct pkt *p)
{
	if (!p->has_l4 || (p->proto == IPPROTO_ICMP && p->icmp_type != ICMP_ECHO_REQUEST))
		return LB_MISS;

	struct svc_key sk = {};
	sk.vip = p->daddr;
	sk.port = p->dport;
	sk.proto = p->proto;
	struct service *svc = bpf_map_lookup_elem(&services, &sk);
	if (!svc)
		return LB_MISS;

	struct flow_key fk = {};
	fk.saddr = p->saddr;
	fk.daddr = p->daddr;
	fk.sport = p->sport;
	fk.dport = p->dport;
	fk.proto = p->proto;

	__u64 now = bpf_ktime_get_ns();
	__be32 maddr = 0;
	__be16 mport = 0;
	int new_flow = 0;
	struct ct_entry *ct = bpf_map_lookup_elem(&conntrack, &fk);
	if (ct) {
		maddr = ct->member_addr;
		mport = ct->member_port;
		ct->last_seen_ns = now;
		__sync_fetch_and_add(&ct->packets, 1);
		__sync_fetch_and_add(&ct->bytes, skb->len);
	} else {
		/* Copy the member list out at once (see forward_ipv4): Go may
		 * replace the service while we hash. */
		struct service members;
		__builtin_memcpy(&members, svc, sizeof(members));
		if (pick_member(&members, &fk, &maddr, &mport) < 0) {
			STAT_INC(lb_no_member);
			return LB_DROP;
		}
		if (!mport)
			mport = p->dport;
		struct ct_entry nct = {};
		nct.member_addr = maddr;
		nct.member_port = mport;
		nct.last_seen_ns = now;
		nct.packets = 1;
		nct.bytes = skb->len;
		/* If the insert fails the flow still works; it is just not
		 * remembered, and the next packet hashes to the same member
		 * as long as the member list is unchanged. */
		bpf_map_update_elem(&conntrack, &fk, &nct, BPF_ANY);
		new_flow = 1;
		STAT_INC(lb_new_flow);
	}

	/* The reverse entry lives in its own LRU and could be evicted while
	 * the flow is still alive; re-create it whenever the client speaks,
	 * the lookup also marks it recently used. */
	struct flow_key rk = {};
	rk.saddr = maddr;
	rk.daddr = p->saddr;
	rk.sport = mport;
	rk.dport = p->sport;
	rk.proto = p->proto;
	if (!bpf_map_lookup_elem(&reverse_nat, &rk)) {
		struct rev_entry re = {};
		re.vip = p->daddr;
		re.vport = p->dport;
		bpf_map_update_elem(&reverse_nat, &rk, &re, BPF_ANY);
	}

	if (set_ipv4_addr(skb, p, offsetof(struct iphdr, daddr), p->daddr, maddr) < 0) {
		STAT_INC(malformed);
		return LB_DROP;
	}
	if (p->proto != IPPROTO_ICMP &&
	    set_l4_port(skb, p, offsetof(struct tcphdr, dest), p->dport, mport) < 0) {
		STAT_INC(malformed);
		return LB_DROP;
	}
	count_svc(&sk, skb->len, new_flow);
	p->daddr = maddr;
	p->dport = mport;
	STAT_INC(lb_dnat);
	return LB_DONE;
}

/* lb_from_member handles a packet that may be a member's reply on a VIP
 * flow: if its tuple has a reverse_nat entry, the source becomes the VIP
 * (and service port) again. */
static __always_inline int lb_from_member(struct __sk_buff *skb, struct pkt *p)
{
	if (!p->has_l4 || (p->proto == IPPROTO_ICMP && p->icmp_type != ICMP_ECHO_REPLY))
		return LB_MISS;

	struct flow_key rk = {};
	rk.saddr = p->saddr;
	rk.daddr = p->daddr;
	rk.sport = p->sport;
	rk.dport = p->dport;
	rk.proto = p->proto;
	struct rev_entry *re = bpf_map_lookup_elem(&reverse_nat, &rk);
	if (!re)
		return LB_MISS;
	__be32 vip = re->vip;
	__be16 vport = re->vport;

	if (set_ipv4_addr(skb, p, offsetof(struct iphdr, saddr), p->saddr, vip) < 0) {
		STAT_INC(malformed);
		return LB_DROP;
	}
	if (p->proto != IPPROTO_ICMP &&
	    set_l4_port(skb, p, offsetof(struct tcphdr, source), p->sport, vport) < 0) {
		STAT_INC(malformed);
		return LB_DROP;
	}
	p->saddr = vip;
	p->sport = vport;
	STAT_INC(lb_snat);
	return LB_DONE;
}
