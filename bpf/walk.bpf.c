// SPDX-License-Identifier: GPL-2.0
/*
 * In-guest half of ebpfmon: programs that copy kernel memory for the IDS.
 *
 * They never interpret what they copy beyond following the pointers they were written to follow;
 * every record is (address, bytes). Each program is a uprobe on the agent's trigger function,
 * filtered to the agent's pid and to the thread named in the request, and serves one request per
 * trigger, or the next part of one the full ring stopped (EBPFMON_OP_RESUME: the ring holds a
 * few MiB, not a whole answer). Every loop is bounded by bpf_loop's count and by the request's
 * object and byte budgets; a resumed walk counts its steps and budgets from its first run.
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
	__uint(max_entries, 2 << 20); /* resized by the agent before load */
} records SEC(".maps");

/* Where a request the full ring stopped stands (walk.h). One request at a time: one entry. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ebpfmon_progress);
} walk_progress SEC(".maps");

#define RUN_NEW 1    /* a request's first run */
#define RUN_RESUME 2 /* a run of EBPFMON_OP_RESUME continuing it */

static __always_inline int for_us(__u32 op)
{
	__u64 id = bpf_get_current_pid_tgid();

	return request.op == op && (id >> 32) == config.agent_tgid && (__u32)id == request.tid;
}

/* Whether this trigger is for `op`: a new request (RUN_NEW), its continuation (RUN_RESUME), or 0. */
static __always_inline int run_of(__u32 op, const struct ebpfmon_progress *p)
{
	if (for_us(op))
		return RUN_NEW;
	if (p->op == op && for_us(EBPFMON_OP_RESUME))
		return RUN_RESUME;
	return 0;
}

static __always_inline struct ebpfmon_progress *progress(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&walk_progress, &zero);
}

/* Starts a run: a new request clears the result, a resumed one keeps its counts. */
static __always_inline __u64 begin(int run)
{
	result.seq = request.seq;
	if (run == RUN_NEW) {
		result.objects = 0;
		result.bytes = 0;
		result.walk_ns = 0;
		result.root = 0;
		result.faults = 0;
		result.error = 0;
		result.pruned = 0;
	}
	result.stop = EBPFMON_STOP_COMPLETE;
	return bpf_ktime_get_ns();
}

/* Ends a run of `op` begun at `started`: a full ring leaves the request to resume. */
static __always_inline void end(__u64 started, __u32 op, struct ebpfmon_progress *p)
{
	result.walk_ns += bpf_ktime_get_ns() - started;
	if (p)
		p->op = result.stop == EBPFMON_STOP_RING_FULL ? op : 0;
}

/* ---- READ: copy [addr, addr + len) in records of at most EBPFMON_READ_CHUNK bytes ---- */

/* Chunk `first + index`: a resumed READ starts at the first chunk it has not copied. */
static long read_chunk(__u64 index, __u64 *first)
{
	__u64 done = (*first + index) * EBPFMON_READ_CHUNK;
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
	struct ebpfmon_progress *p = progress();
	__u64 chunks, first, started;
	int run;

	if (!p)
		return 0;
	run = run_of(EBPFMON_OP_READ, p);
	if (!run)
		return 0;
	started = begin(run);
	chunks = (request.len + EBPFMON_READ_CHUNK - 1) / EBPFMON_READ_CHUNK;
	/* Every chunk copied is one record: the first not copied is the next. */
	first = result.objects;
	if (chunks > EBPFMON_READ_MAX_CHUNKS) {
		result.stop = EBPFMON_STOP_MAX_BYTES;
	} else if (first < chunks) {
		bpf_loop(chunks - first, read_chunk, &first, 0);
	}
	end(started, EBPFMON_OP_READ, p);
	return 0;
}

/* ---- ANCHOR: the address of the calling task, where every walk of the IDS begins ---- */

SEC("uprobe")
int report_anchor(struct pt_regs *ctx)
{
	__u64 started;

	if (!for_us(EBPFMON_OP_ANCHOR))
		return 0;
	started = begin(RUN_NEW);
	result.root = (__u64)bpf_get_current_task();
	end(started, EBPFMON_OP_ANCHOR, NULL);
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
	__u32 stage; /* the next record of cur: STAGE_* */
};

/* The records of one task, each a stage, so that a resumed walk copies none of them twice. */
#define STAGE_TASK 0
#define STAGE_REAL_CRED 1
#define STAGE_CRED 2
#define STAGE_PARENT 3

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

	if (c->stage == STAGE_TASK) {
		rc = EMIT(task, struct task_struct);
		if (rc) {
			if (rc > 0)
				result.stop = EBPFMON_STOP_FAULT;
			return 1;
		}
		c->stage = STAGE_REAL_CRED;
	}
	real_cred = BPF_CORE_READ(task, real_cred);
	if (c->stage == STAGE_REAL_CRED) {
		if (EMIT(real_cred, struct cred) < 0)
			return 1;
		c->stage = STAGE_CRED;
	}
	if (c->stage == STAGE_CRED) {
		cred = BPF_CORE_READ(task, cred);
		if (cred != real_cred && EMIT(cred, struct cred) < 0)
			return 1;
		c->stage = STAGE_PARENT;
	}
	/* A parent that is not a group leader is not on the tasks list: copy it too. */
	parent = BPF_CORE_READ(task, real_parent);
	if (parent && BPF_CORE_READ(parent, group_leader) != parent &&
	    EMIT(parent, struct task_struct) < 0)
		return 1;
	c->stage = STAGE_TASK;

	next = BPF_CORE_READ(task, tasks.next);
	c->cur = (void *)next - bpf_core_field_offset(struct task_struct, tasks);
	return c->cur == c->head ? 1 : 0;
}

SEC("uprobe")
int walk_tasks(struct pt_regs *ctx)
{
	struct ebpfmon_progress *p = progress();
	struct walk_ctx c = {};
	__u64 steps, started;
	long done;
	int run;

	if (!p)
		return 0;
	run = run_of(EBPFMON_OP_WALK_TASKS, p);
	if (!run)
		return 0;
	started = begin(run);
	if (run == RUN_NEW) {
		c.cur = (struct task_struct *)bpf_get_current_task();
		bpf_loop(EBPFMON_MAX_ANCESTORS, find_init_task, &c, 0);
		if (!c.head) {
			result.stop = EBPFMON_STOP_NO_ROOT;
			end(started, EBPFMON_OP_WALK_TASKS, p);
			return 0;
		}
		result.root = (__u64)c.head;
		c.cur = c.head;
		p->steps = 0;
	} else {
		c.head = (struct task_struct *)p->head;
		c.cur = (struct task_struct *)p->cur;
		c.stage = p->stage;
	}
	steps = request.max_objects + 1;
	if (steps > (1 << 23))
		steps = 1 << 23;
	done = bpf_loop(steps > p->steps ? steps - p->steps : 0, walk_step, &c, 0);
	if (done > 0 && result.stop == EBPFMON_STOP_RING_FULL)
		done--;
	if (done > 0)
		p->steps += done;
	p->head = (__u64)c.head;
	p->cur = (__u64)c.cur;
	p->stage = c.stage;
	end(started, EBPFMON_OP_WALK_TASKS, p);
	return 0;
}

/* ---- PLAN: the walk the IDS described (plan.h) ---- */

#include "plan_walk.h"
