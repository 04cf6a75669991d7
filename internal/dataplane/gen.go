package dataplane

// The BPF object and its Go bindings (switch_bpfel.go, switch_bpfel.o) are
// generated from bpf/switch.c and committed, so building needs no clang.
// Regenerate after changing anything under bpf/ (needs clang, llvm and
// libbpf-dev):
//
//	go generate ./internal/dataplane
//
// Every -type names a C type whose Go twin is generated from BTF: map keys
// and values, and the enums that carry limits and member states.

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -I/usr/include/x86_64-linux-gnu" -target bpfel -type port_info -type port_counters -type addr_entry -type addr_counters -type svc_key -type member -type service -type svc_counters -type flow_key -type ct_entry -type rev_entry -type dp_config -type global_counters -type dp_limits -type member_state -output-stem switch bpf bpf/switch.c
