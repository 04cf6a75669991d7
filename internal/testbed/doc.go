// Package testbed builds the seed experiment's three-node testbed on one
// machine out of network namespaces:
//
//	+-------------------- switch ---------------------+
//	|  br0 (data plane)            mgmt (198.19.0.1)  |
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
// Until the eBPF switch takes over, br0 forwards: learning is off on its
// ports and every known MAC has a static entry, so a container's MAC is
// steered to exactly one host (Steer), never flooded to both while a
// migration's destination is pre-staged. The ports are ordinary veth
// interfaces, so the eBPF data plane can replace br0 without changing the
// topology.
package testbed
