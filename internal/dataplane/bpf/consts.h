/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * consts.h — every size and magic number of the switch in one place.
 *
 * Sizes are enum constants rather than #defines so that clang emits them in
 * BTF and bpf2go (-type dp_limits, -type member_state) turns them into Go
 * constants: the Go API reads its limits from here instead of keeping a copy.
 */
#pragma once

enum dp_limits {
	/* Switch port numbers are 1..MAX_PORTS; index 0 of the port arrays
	 * stands for "ingress interface that is not a configured port". */
	MAX_PORTS = 64,
	/* Entries of the address table (forward + arp_forward views). */
	MAX_ADDRESSES = 4096,
	/* Load-balanced services (VIP, L4 port, protocol). */
	MAX_SERVICES = 256,
	/* Members per service; fixed so the rendezvous loop is bounded. */
	MAX_MEMBERS = 16,
	/* Client-side flows remembered by the connection table (LRU); the
	 * reverse-NAT table has the same size. */
	MAX_FLOWS = 65536,
};

enum member_state {
	MEMBER_NONE = 0,     /* empty slot */
	MEMBER_ACTIVE = 1,   /* receives new flows */
	MEMBER_DRAINING = 2, /* keeps its flows, receives no new ones */
};

/* Hash seed of the flow hash; changing it reshuffles every new flow. */
#define FLOW_HASH_SEED 0x5bd1e995u

/* IPv4 fragment bits of iphdr.frag_off (host order). */
#define IPV4_MF 0x2000     /* more fragments */
#define IPV4_OFFSET 0x1fff /* fragment offset mask */

/* ARP wire values (linux/if_arp.h would drag in libc headers). */
#define ARP_HW_ETHER 1 /* ARPHRD_ETHER */
#define ARP_OP_REQUEST 1 /* ARPOP_REQUEST */
#define ARP_OP_REPLY 2   /* ARPOP_REPLY */

/* ICMP echo types (linux/icmp.h would drag in libc headers). */
#define ICMP_ECHO_REPLY 0
#define ICMP_ECHO_REQUEST 8
