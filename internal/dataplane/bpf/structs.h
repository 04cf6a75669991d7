/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * structs.h — keys and values of the maps in maps.h.
 *
 * These are the only definitions of the table layouts: the Go side gets its
 * twins generated from BTF by bpf2go (-type ...), so a field added here shows
 * up in Go on the next `go generate`. Addresses and ports are kept in network
 * byte order, exactly as they sit in the packet, so the fast path never
 * converts. Explicit padding keeps the layout identical on both sides and
 * makes zeroing keys (which the hash maps compare bytewise) obvious.
 */
#pragma once

/* ports[port number] — where a switch port sends packets. */
struct port_info {
	__u32 ifindex;     /* egress interface; 0 = port not attached */
	__u8 attach_mode;  /* how Go attached the program (Go-only bookkeeping) */
	__u8 _pad[3];
};

/* port_stats[port number] — per-CPU counters of a port. */
struct port_counters {
	__u64 rx_packets;  /* frames that entered through this port */
	__u64 rx_bytes;
	__u64 tx_packets;  /* frames sent out of this port (incl. floods) */
	__u64 tx_bytes;
	__u64 rx_dropped;  /* frames that entered here and were dropped */
};

/*
 * addresses[IPv4] — one entry holds both views of an address:
 *   forward view     (has_fwd): IPv4 packets to the address leave through
 *                    fwd_port, with the destination MAC rewritten to dst_mac
 *                    when has_dst_mac (the switch then routes: TTL - 1);
 *   arp_forward view (has_arp): ARP packets whose target is the address
 *                    leave through arp_port;
 *   proxy ARP        (arp_reply): the switch answers ARP requests for the
 *                    address itself with arp_mac (used for VIPs, which live
 *                    on no host).
 * Because both views are one element, moving an address is one map update.
 */
struct addr_entry {
	__u32 fwd_port;
	__u32 arp_port;
	__u8 dst_mac[6];
	__u8 arp_mac[6];
	__u8 has_fwd;
	__u8 has_dst_mac;
	__u8 has_arp;
	__u8 arp_reply;
};

/* addr_stats[IPv4] — per-CPU counters of an address table entry. */
struct addr_counters {
	__u64 fwd_packets; /* IPv4 packets forwarded by the entry */
	__u64 fwd_bytes;
	__u64 arp_packets; /* ARP packets forwarded or answered for it */
};

/* services key — a virtual service. For ICMP (echo) port is 0. */
struct svc_key {
	__be32 vip;
	__be16 port;
	__u8 proto;        /* IPPROTO_TCP, IPPROTO_UDP or IPPROTO_ICMP */
	__u8 _pad;
};

/* One backend of a service. */
struct member {
	__be32 addr;
	__be16 port;       /* 0: keep the service port */
	__u8 state;        /* enum member_state */
	__u8 _pad;
};

/* services value — its members; empty slots have state MEMBER_NONE. */
struct service {
	struct member members[MAX_MEMBERS];
};

/* svc_stats[svc_key] — per-CPU counters of a service. */
struct svc_counters {
	__u64 packets;     /* client packets DNATed to a member */
	__u64 bytes;
	__u64 new_flows;   /* connection table entries created */
};

/*
 * A 5-tuple as it appears in a packet. ICMP echo uses the identifier as the
 * port of the side that chose it: requests {sport = id, dport = 0}, replies
 * {sport = 0, dport = id}, so the reply of a flow has the mirrored tuple.
 */
struct flow_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 _pad[3];
};

/* conntrack[client-side flow_key {client, vip, cport, vport}] */
struct ct_entry {
	__be32 member_addr;
	__be16 member_port; /* port the member is reached at (0 for ICMP) */
	__u16 _pad;
	__u64 last_seen_ns; /* bpf_ktime_get_ns() of the last client packet */
	__u64 packets;      /* client packets of the flow */
	__u64 bytes;
};

/* reverse_nat[member-side flow_key {member, client, mport, cport}] */
struct rev_entry {
	__be32 vip;
	__be16 vport;
	__u16 _pad;
};

/* config[0] — run-time switches set from Go. */
struct dp_config {
	__u32 flood_arp;    /* non-zero: flood ARP for unknown targets */
	__u32 initialized;  /* set by Go once it has written the defaults, so
			     * a re-load over pinned maps keeps the settings */
};

/*
 * global_stats[0] — per-CPU counters by reason. Go lists every field by
 * name (snake_case), so adding a field here adds a counter to the API.
 */
struct global_counters {
	__u64 non_ip;          /* dropped: neither IPv4 nor ARP */
	__u64 malformed;       /* dropped: truncated or invalid headers */
	__u64 no_route;        /* dropped: IPv4 destination has no forward entry */
	__u64 port_down;       /* dropped: egress port not attached */
	__u64 ttl_exceeded;    /* dropped: TTL would reach 0 while routing */
	__u64 routed;          /* forwarded with MAC rewrite and TTL - 1 */
	__u64 switched;        /* forwarded unchanged at L2/L3 */
	__u64 fragments;       /* IPv4 fragments (forwarded without L4 NAT) */
	__u64 arp_forwarded;   /* ARP sent to the arp_forward port */
	__u64 arp_replied;     /* ARP requests answered by the switch */
	__u64 arp_flooded;     /* ARP frames flooded to the other ports */
	__u64 arp_no_route;    /* dropped: unknown ARP target, flooding off */
	__u64 flood_failed;    /* clone to one port of a flood failed */
	__u64 lb_new_flow;     /* connection table entries created */
	__u64 lb_dnat;         /* client packets rewritten VIP -> member */
	__u64 lb_snat;         /* member packets rewritten member -> VIP */
	__u64 lb_no_member;    /* dropped: service has no active member */
	__u64 unknown_ingress; /* packets from an interface that is no port */
};
