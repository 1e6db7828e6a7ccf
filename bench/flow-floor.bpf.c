// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * The hooks the flow source's design needs, doing nothing else: two programs on
 * tp_btf/inet_sock_set_state (the lifecycle and the one that takes skipped changes),
 * one on tcp_destroy_sock, a sock_ops program on the cgroup v2 root, and optionally
 * per-socket state created for every new socket: in sk_storage (freed with the socket) or
 * in a preallocated hash keyed by socket cookie (deleted at tcp_destroy_sock).
 * bench/flow.bench.ts measures what these cost alone: the floor under any capture built
 * on them.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The size of the flow source's per-socket state. */
struct floor_sk {
	__u64 words[8];
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct floor_sk);
} floor_sockets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct floor_sk);
} floor_table SEC(".maps");

#define FLOOR_SK_STORAGE 1
#define FLOOR_HASH 2

/* Set by the loader before load: 0, FLOOR_SK_STORAGE or FLOOR_HASH. */
const volatile __u32 floor_storage = 0;

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(floor_state, const struct sock *sk, const int oldstate, const int newstate)
{
	/* SYN_SENT (connect) and LISTEN -> SYN_RECV (accepted child): where the flow source creates storage. */
	if (newstate == 2 || (oldstate == 10 && newstate == 3)) {
		if (floor_storage == FLOOR_SK_STORAGE)
			bpf_sk_storage_get(&floor_sockets, (void *)sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (floor_storage == FLOOR_HASH) {
			struct floor_sk zero = {};
			__u64 cookie = bpf_get_socket_cookie((void *)sk);

			bpf_map_update_elem(&floor_table, &cookie, &zero, BPF_ANY);
		}
	}
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(floor_state_second, const struct sock *sk, const int oldstate, const int newstate)
{
	return 0;
}

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(floor_destroy, struct sock *sk)
{
	if (floor_storage == FLOOR_HASH) {
		__u64 cookie = bpf_get_socket_cookie((void *)sk);

		bpf_map_delete_elem(&floor_table, &cookie);
	}
	return 0;
}

SEC("sockops")
int floor_sockops(struct bpf_sock_ops *skops)
{
	return 1;
}
