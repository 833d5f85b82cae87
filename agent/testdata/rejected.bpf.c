// SPDX-License-Identifier: GPL-2.0
/* A program the verifier must reject: it reads past the end of a map value. */
#include "../../bpf/kernel.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} values SEC(".maps");

SEC("uprobe")
int out_of_bounds(struct pt_regs *ctx)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&values, &key);

	if (!value)
		return 0;
	return value[8];
}
