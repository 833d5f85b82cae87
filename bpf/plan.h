/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A walk plan: what the in-guest walker visits, which pointers it follows and which byte ranges
 * of each object it copies. The IDS builds plans from the kernel types it read in BTF; the
 * walker (walk.bpf.c, op EBPFMON_OP_PLAN) interprets them without knowing any kernel type.
 * protocol/plan.ts mirrors these layouts byte for byte; every integer is little-endian.
 *
 * A plan is a small graph. Roots are objects at known addresses. Each node describes a kind of
 * object: the ranges to copy, relative to the object's address, and up to PLAN_MAX_EDGES edges
 * to other objects. An edge reads a value at `off` in the current object:
 *
 *   PLAN_EDGE_PTR    p = *(u64 *)(obj + off); visit target at p - delta, unless p is NULL.
 *   PLAN_EDGE_LIST   obj + off is a list_head; for each entry e (e = head->next; e != head;
 *                    e = e->next): visit target at e - delta.
 *   PLAN_EDGE_HLIST  p = *(u64 *)(obj + off) is an hlist's first node; p = p->next until NULL.
 *   PLAN_EDGE_HNULLS as HLIST, but the chain ends at a "nulls" marker (an odd value).
 *   PLAN_EDGE_ARRAY  a = *(u64 *)(obj + off) points to `count` elements of `stride` bytes, where
 *                    count is the `count_size`-byte value at obj + aux (plus one when
 *                    PLAN_FLAG_COUNT_IS_MASK). Each element holds, `elem_off` bytes into it,
 *                    `elem`: PLAN_ELEM_PTR (a pointer to the target, minus delta),
 *                    PLAN_ELEM_HLIST or PLAN_ELEM_HNULLS (the head of a chain whose entries are
 *                    the targets, minus delta). The elements
 *                    themselves (count * stride bytes at a) are copied too, before their targets;
 *                    with PLAN_FLAG_SPARSE (PTR elements only, stride 8), only the runs of
 *                    elements around the non-NULL ones are (see below), for a mostly empty
 *                    table (an fd array).
 *   PLAN_EDGE_SLOTS  obj + off holds `max` u64 slots (an xarray node's `slots`, a table of
 *                    pointers); a slot's value v is an entry when v != 0 and
 *                    (v & aux) == stride (aux is the tag mask, stride the tag value: an xarray
 *                    marks its internal nodes with tag 2, plain entries have tag 0): visit
 *                    target at v - delta. Values below the kernel half are skipped, unread
 *                    (xarray sibling and retry entries are small numbers, not pointers).
 *   PLAN_EDGE_BYTES  copy `n` bytes at p = *(u64 *)(obj + off), n being the `count_size`-byte
 *                    value at obj + aux (a number of bits, rounded up to bytes, with
 *                    PLAN_FLAG_BITS: a bitmap), at most `max` bytes.
 *
 * An edge may carry a condition on a field of the current object, read as `cond_size` bytes at
 * `cond_off`: PLAN_COND_EQ follows when (field & mask) == value, PLAN_COND_NE when it is not;
 * PLAN_COND_IN_SET when the field is below 32 and bit `field` of `mask` is set; PLAN_COND_DIFF
 * when the 8-byte field minus the 8-byte field at offset `mask` of the same object is `value`
 * (two pointers into one object: a socket file's f_inode and its private_data). Lists, chains and arrays are followed for
 * at most `max` entries each.
 *
 * Every walk is bounded: by PLAN_MAX_DEPTH (or the plan's max_depth) hops from a root, by the
 * request's object and byte budgets, by the size of the walker's work stack, and by bpf_loop.
 * Roots are at depth 0 and every edge is one hop, BYTES included: an edge of an object at
 * max_depth is not followed, and counted in the result's `pruned`. A node with PLAN_FLAG_DEDUPE
 * is visited once per walk per address. A node with `covered_by` (1 + a deduped node's index) is
 * not visited at an address the walk already visited as that node: the plan says that node copies
 * every range this one would and leads wherever this one leads (a thread read for its links is
 * covered by the same task copied whole as a process).
 *
 * A node with a guard visits only the objects whose own field (read as `size` bytes at `off`)
 * passes the guard's condition, tested as an edge's: the walk reaches candidates (every entry of
 * a list whose entries are of several kinds) and the guard keeps those of this node's kind.
 *
 * A sparse ARRAY copies, for each window of elements it reads, the elements from its first
 * non-NULL one not copied yet to its last as one record, the NULLs between included: an fd
 * table's open fds cost a record per window, not one each. An array of plain pointers (sparse
 * or not) visits, in each step, the next element that leads to an object not visited yet: the
 * maps programs share, the files processes share, cost no step each.
 */
#ifndef EBPFMON_PLAN_H
#define EBPFMON_PLAN_H

#define PLAN_MAX_ROOTS 16
#define PLAN_MAX_NODES 64
#define PLAN_MAX_RANGES 8
#define PLAN_MAX_EDGES 8
#define PLAN_MAX_DEPTH 64
/* Largest single copy; longer ranges are copied in several records. */
#define PLAN_CHUNK 16384

#define PLAN_EDGE_PTR 1
#define PLAN_EDGE_LIST 2
#define PLAN_EDGE_HLIST 3
#define PLAN_EDGE_HNULLS 4
#define PLAN_EDGE_ARRAY 5
#define PLAN_EDGE_BYTES 6
#define PLAN_EDGE_SLOTS 7

#define PLAN_ELEM_PTR 0
#define PLAN_ELEM_HLIST 1
#define PLAN_ELEM_HNULLS 2

#define PLAN_COND_NONE 0
#define PLAN_COND_EQ 1
#define PLAN_COND_IN_SET 2
#define PLAN_COND_NE 3
#define PLAN_COND_DIFF 4

/* Edge flags. */
#define PLAN_FLAG_COUNT_IS_MASK 1
#define PLAN_FLAG_SPARSE 2
#define PLAN_FLAG_BITS 4
/* Node flags. */
#define PLAN_FLAG_DEDUPE 1

struct plan_range {
	__u32 off;
	__u32 len;
};

struct plan_edge {
	__u8 kind;       /* PLAN_EDGE_* */
	__u8 target;     /* node index */
	__u8 elem;       /* ARRAY: PLAN_ELEM_* */
	__u8 flags;      /* PLAN_FLAG_COUNT_IS_MASK, PLAN_FLAG_SPARSE, PLAN_FLAG_BITS */
	__u8 count_size; /* ARRAY, BYTES: 1, 2, 4 or 8 */
	__u8 cond;       /* PLAN_COND_* */
	__u8 cond_size;  /* 1, 2, 4 or 8 */
	__u8 elem_off;   /* ARRAY: where in each element its pointer or chain head is */
	__u32 off;       /* where the pointer, list head or array pointer is */
	__s32 delta;     /* target object = entry address - delta */
	__u32 aux;       /* ARRAY, BYTES: where the count is; SLOTS: the tag mask */
	__u32 stride;    /* ARRAY: bytes per element; SLOTS: the tag value */
	__u32 max;       /* most entries (LIST, HLIST, HNULLS, ARRAY), slots (SLOTS), bytes (BYTES) */
	__u32 cond_off;
	__u64 cond_mask;
	__u64 cond_value;
};

/* A node's guard: an object is visited only when its own field passes (PLAN_COND_*). */
struct plan_guard {
	__u8 cond; /* PLAN_COND_NONE: no guard */
	__u8 size; /* 1, 2, 4 or 8 */
	__u16 pad;
	__u32 off;
	__u64 mask;
	__u64 value;
};

struct plan_node {
	__u32 flags;      /* PLAN_FLAG_DEDUPE */
	__u32 nranges;
	__u32 nedges;
	__u32 covered_by; /* 0, or 1 + the node that covers this one */
	struct plan_range ranges[PLAN_MAX_RANGES];
	struct plan_edge edges[PLAN_MAX_EDGES];
	struct plan_guard guard;
};

struct plan_root {
	__u64 addr;
	__u32 node;
	__u32 pad;
};

struct ebpfmon_plan {
	__u32 nroots;
	__u32 nnodes;
	__u32 max_depth;
	__u32 pad;
	struct plan_root roots[PLAN_MAX_ROOTS];
	struct plan_node nodes[PLAN_MAX_NODES];
};

#endif
