// SPDX-License-Identifier: GPL-2.0
/*
 * In-guest half of ebpfmon: programs that copy kernel memory for the IDS.
 *
 * They never interpret what they copy beyond following the pointers they were written to follow;
 * every record is (address, bytes). Each program is a uprobe on the agent's trigger function,
 * filtered to the agent's pid and to the thread named in the request, and serves one request per
 * trigger. Every loop is bounded by bpf_loop's count and by the request's object and byte budgets.
 *
 * walk_tasks is the built-in task walk; walk_plan (plan_walk.h) walks whatever plan the IDS sends.
 */
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "walk.h"

char LICENSE[] SEC("license") = "GPL";

const volatile struct ebpfmon_config config = {};
struct ebpfmon_shared shared = {};

#define request shared.request
#define result shared.result

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 << 20); /* resized by the agent before load */
} records SEC(".maps");

static __always_inline int for_us(__u32 op)
{
	__u64 id = bpf_get_current_pid_tgid();

	return request.op == op && (id >> 32) == config.agent_tgid && (__u32)id == request.tid;
}

static __always_inline void begin(void)
{
	result.seq = request.seq;
	result.objects = 0;
	result.bytes = 0;
	result.walk_ns = bpf_ktime_get_ns();
	result.root = 0;
	result.faults = 0;
	result.error = 0;
	result.stop = EBPFMON_STOP_COMPLETE;
	result.pruned = 0;
}

static __always_inline void end(void)
{
	result.walk_ns = bpf_ktime_get_ns() - result.walk_ns;
}

/* ---- READ: copy [addr, addr + len) in records of at most EBPFMON_READ_CHUNK bytes ---- */

static long read_chunk(__u64 index, void *unused)
{
	__u64 done = index * EBPFMON_READ_CHUNK;
	__u64 left = request.len - done;
	__u32 n = EBPFMON_READ_CHUNK;
	struct ebpfmon_record *rec;
	long err;

	if (left < EBPFMON_READ_CHUNK)
		n = left;
	rec = bpf_ringbuf_reserve(&records, sizeof(*rec) + EBPFMON_READ_CHUNK, 0);
	if (!rec) {
		result.stop = EBPFMON_STOP_RING_FULL;
		return 1;
	}
	err = bpf_probe_read_kernel(rec + 1, n, (const void *)(request.addr + done));
	if (err) {
		bpf_ringbuf_discard(rec, BPF_RB_NO_WAKEUP);
		result.error = err;
		result.stop = EBPFMON_STOP_FAULT;
		return 1;
	}
	rec->addr = request.addr + done;
	rec->len = n;
	rec->pad = 0;
	bpf_ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
	result.objects++;
	result.bytes += n;
	return 0;
}

SEC("uprobe")
int read_memory(struct pt_regs *ctx)
{
	__u64 chunks;

	if (!for_us(EBPFMON_OP_READ))
		return 0;
	begin();
	chunks = (request.len + EBPFMON_READ_CHUNK - 1) / EBPFMON_READ_CHUNK;
	if (chunks > EBPFMON_READ_MAX_CHUNKS) {
		result.stop = EBPFMON_STOP_MAX_BYTES;
	} else {
		bpf_loop(chunks, read_chunk, NULL, 0);
	}
	end();
	return 0;
}

/* ---- ANCHOR: the address of the calling task, where every walk of the IDS begins ---- */

SEC("uprobe")
int report_anchor(struct pt_regs *ctx)
{
	if (!for_us(EBPFMON_OP_ANCHOR))
		return 0;
	begin();
	result.root = (__u64)bpf_get_current_task();
	end();
	return 0;
}

/* ---- WALK_TASKS: init_task and every task on its tasks list, with their creds ---- */

/*
 * Copies one object of a constant size. Returns 0 when copied, 1 when the object could not be
 * read (counted, skipped), and -1 when a budget or the ring ran out (the walk must stop).
 */
static __always_inline int emit(const void *addr, __u32 size)
{
	struct ebpfmon_record *rec;

	if (result.objects >= request.max_objects) {
		result.stop = EBPFMON_STOP_MAX_OBJECTS;
		return -1;
	}
	if (result.bytes + size > request.max_bytes) {
		result.stop = EBPFMON_STOP_MAX_BYTES;
		return -1;
	}
	rec = bpf_ringbuf_reserve(&records, sizeof(*rec) + size, 0);
	if (!rec) {
		result.stop = EBPFMON_STOP_RING_FULL;
		return -1;
	}
	if (bpf_probe_read_kernel(rec + 1, size, addr)) {
		bpf_ringbuf_discard(rec, BPF_RB_NO_WAKEUP);
		result.faults++;
		return 1;
	}
	rec->addr = (__u64)addr;
	rec->len = size;
	rec->pad = 0;
	bpf_ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
	result.objects++;
	result.bytes += size;
	return 0;
}

#define EMIT(ptr, type) emit((ptr), bpf_core_type_size(type))

struct walk_ctx {
	struct task_struct *head;
	struct task_struct *cur;
};

static long find_init_task(__u64 index, struct walk_ctx *c)
{
	struct task_struct *task = c->cur, *parent;

	if (BPF_CORE_READ(task, pid) == 0) {
		c->head = task;
		return 1;
	}
	parent = BPF_CORE_READ(task, real_parent);
	if (!parent || parent == task)
		return 1;
	c->cur = parent;
	return 0;
}

static long walk_step(__u64 index, struct walk_ctx *c)
{
	struct task_struct *task = c->cur, *parent;
	const struct cred *real_cred, *cred;
	struct list_head *next;
	int rc;

	rc = EMIT(task, struct task_struct);
	if (rc) {
		if (rc > 0)
			result.stop = EBPFMON_STOP_FAULT;
		return 1;
	}
	real_cred = BPF_CORE_READ(task, real_cred);
	cred = BPF_CORE_READ(task, cred);
	if (EMIT(real_cred, struct cred) < 0)
		return 1;
	if (cred != real_cred && EMIT(cred, struct cred) < 0)
		return 1;
	/* A parent that is not a group leader is not on the tasks list: copy it too. */
	parent = BPF_CORE_READ(task, real_parent);
	if (parent && BPF_CORE_READ(parent, group_leader) != parent &&
	    EMIT(parent, struct task_struct) < 0)
		return 1;

	next = BPF_CORE_READ(task, tasks.next);
	c->cur = (void *)next - bpf_core_field_offset(struct task_struct, tasks);
	return c->cur == c->head ? 1 : 0;
}

SEC("uprobe")
int walk_tasks(struct pt_regs *ctx)
{
	struct walk_ctx c = {};
	__u64 steps;

	if (!for_us(EBPFMON_OP_WALK_TASKS))
		return 0;
	begin();
	c.cur = (struct task_struct *)bpf_get_current_task();
	bpf_loop(EBPFMON_MAX_ANCESTORS, find_init_task, &c, 0);
	if (!c.head) {
		result.stop = EBPFMON_STOP_NO_ROOT;
		end();
		return 0;
	}
	result.root = (__u64)c.head;
	c.cur = c.head;
	steps = request.max_objects + 1;
	if (steps > (1 << 23))
		steps = 1 << 23;
	bpf_loop(steps, walk_step, &c, 0);
	end();
	return 0;
}

/* ---- PLAN: the walk the IDS described (plan.h) ---- */

#include "plan_walk.h"
