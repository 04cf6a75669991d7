// Package testbed builds the seed experiment's testbed on one machine out
// of network namespaces: two hosts and a client behind a switch, or more
// hosts (hostC, hostD, ...; Config.Hosts, addr.go) on further switch ports:
//
//	+-------------------- switch ---------------------+
//	|  eBPF switch or br0          mgmt (198.19.0.1)  |
//	| sw-hostA sw-hostB sw-client  mg-hostA mg-hostB..|
//	+----|--------|--------|----------|--------|------+
//	   eth0     eth0     eth0       mgmt0    mgmt0
//	 hostA    hostB    client      (one per node)
//	  |  \
//	  |   macvlan "eth0" in each container namespace
//
// Every node is a namespace named PREFIX-NODE; containers' namespaces are
// PREFIX-HOST-NAME. All links live inside those namespaces, so deleting the
// namespaces removes every link, and two testbeds with different prefixes
// never collide. Down finds leftovers by prefix alone, so it also cleans up
// after a crash in the middle of Up.
//
// The data network is 198.18.0.0/24 and the management network (agents,
// controller, image transfer) is 198.19.0.0/24, both inside 198.18.0.0/15,
// which is reserved for benchmarking; no namespace has a route anywhere else.
//
// The data plane is the eBPF switch by default (Config.Switch): the
// program of internal/dataplane on the data ports (one per node), pinned in bpffs per
// testbed, with every node's address programmed; given the cflow binary, Up
// also runs the switch controller (cflow switch serve) on 198.19.0.1:5000
// before the agents, which then steer through its API. The alternative is
// br0, a Linux bridge with learning off and static FDB entries, kept so the
// two can be compared on the same topology. Either way Steer sends a
// container's traffic to exactly one host, never to a pre-staged
// destination before the move. Down also kills the controller and removes
// the pins.
package testbed
