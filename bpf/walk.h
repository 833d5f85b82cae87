/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Layouts shared by walk.bpf.c and its user side, agent/_walk_layout.ts (which mirrors the
 * offsets).
 *
 * The agent writes a request into the object's .bss, calls the trigger function, and the program
 * attached to it (a uprobe filtered to the agent's pid and calling thread) serves the request:
 * it appends records to the ring buffer "records" and fills the result in .bss before the
 * trigger call returns.
 */
#ifndef EBPFMON_WALK_H
#define EBPFMON_WALK_H

#include "plan.h"

#define EBPFMON_OP_READ 1
#define EBPFMON_OP_WALK_TASKS 2
#define EBPFMON_OP_ANCHOR 3
#define EBPFMON_OP_PLAN 4
/*
 * Continue the READ, WALK_TASKS or PLAN request whose last run stopped with
 * EBPFMON_STOP_RING_FULL, once the agent has emptied the ring: same seq, same budgets, the
 * result's counts those of the whole request so far.
 */
#define EBPFMON_OP_RESUME 5

/* Largest span one READ record carries; longer reads are split into several records. */
#define EBPFMON_READ_CHUNK 4096
/* Upper bound on records one READ request may produce (4 MiB). */
#define EBPFMON_READ_MAX_CHUNKS 1024
/* Hops allowed from the current task up its real_parent chain to init_task. */
#define EBPFMON_MAX_ANCESTORS 4096

/* Why a request stopped; 0 means it completed. */
#define EBPFMON_STOP_COMPLETE 0
#define EBPFMON_STOP_MAX_OBJECTS 1
#define EBPFMON_STOP_MAX_BYTES 2
#define EBPFMON_STOP_RING_FULL 3
#define EBPFMON_STOP_FAULT 4
#define EBPFMON_STOP_NO_ROOT 5
#define EBPFMON_STOP_STACK_FULL 6 /* PLAN: the work stack had no room for the next item */
#define EBPFMON_STOP_STEPS 7      /* PLAN: bpf_loop ran out of steps */

/* .rodata: set by the agent before load. The only read-only global, so it sits at offset 0. */
struct ebpfmon_config {
	__u32 agent_tgid; /* the only process whose trigger calls are served */
	__u32 seen_mask;  /* slots of plan_seen minus one (a power of two minus one) */
	__u64 kernel_min; /* first address of the kernel half in the kernel's paging mode */
};

struct ebpfmon_request {
	__u64 seq;         /* copied into the result, so the agent can tell the program ran */
	__u32 op;          /* EBPFMON_OP_* */
	__u32 tid;         /* only this thread of the agent may trigger */
	__u64 addr;        /* READ: first byte */
	__u64 len;         /* READ: length in bytes */
	__u64 max_objects; /* WALK: records allowed */
	__u64 max_bytes;   /* WALK: payload bytes allowed */
};

struct ebpfmon_result {
	__u64 seq;
	__u64 objects;  /* records emitted */
	__u64 bytes;    /* payload bytes emitted */
	__u64 walk_ns;  /* time spent in the program */
	__u64 root;     /* ANCHOR: current task; WALK: init_task */
	__u64 faults;   /* objects (PLAN: reads) that could not be read and were skipped */
	__s64 error;    /* READ: negative errno of the failing read, else 0 */
	__u64 stop;     /* EBPFMON_STOP_* */
	__u64 pruned;   /* PLAN: edges not followed because they lead deeper than max_depth */
};

/*
 * .bss: the request the agent writes and the result the program writes, at fixed offsets; for
 * EBPFMON_OP_PLAN the agent also writes the plan, last so that the offsets before it stay put.
 */
struct ebpfmon_shared {
	struct ebpfmon_request request;
	struct ebpfmon_result result;
	struct ebpfmon_plan plan;
};

/*
 * Where a request the full ring stopped stands (the map walk_progress): the programs' own
 * state, which the agent neither reads nor writes. A run that found the ring full left the step
 * it could not finish as it was before that step, so EBPFMON_OP_RESUME runs it again and the
 * request's records are those one run with a ring large enough would have copied.
 */
struct ebpfmon_progress {
	__u32 op;        /* the op EBPFMON_OP_RESUME continues, 0 when none */
	__u32 stage;     /* WALK_TASKS: the next record of the current task */
	__u64 steps;     /* WALK_TASKS, PLAN: bpf_loop steps done, the unfinished one not counted */
	__u64 head;      /* WALK_TASKS: init_task */
	__u64 cur;       /* WALK_TASKS: the current task */
	__u32 sp;        /* PLAN: items on the work stack */
	__u32 max_depth; /* PLAN: the plan's, at most PLAN_MAX_DEPTH */
};

/* One ring buffer record: this header, then len bytes of kernel memory copied from addr. */
struct ebpfmon_record {
	__u64 addr;
	__u32 len;
	__u32 pad;
};

#endif
