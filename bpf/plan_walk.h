/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The plan interpreter (EBPFMON_OP_PLAN) of walk.bpf.c, which includes it after defining
 * `request`, `result`, `shared`, the ring buffer `records` and a run's beginning and end
 * (`progress`, `run_of`, `begin`, `end`). It walks the plan (plan.h) the agent wrote into
 * shared.plan, in as many runs as the ring needs (EBPFMON_OP_RESUME).
 *
 * A plan nests loops (entries of lists, in arrays, in objects...), and nested bpf_loops are hard
 * on the verifier. So the whole walk is ONE bpf_loop over small steps, with an explicit work
 * stack: each step does one piece of work for the item on top, e.g. one range of an object, one
 * edge, one list entry, one chunk of a copy. A step that finds new work leaves its own item,
 * advanced, in place and pushes the new item above it. The walk is therefore depth first and
 * its records come in pre-order: a root's ranges in plan order, then each edge's objects in edge
 * order (list and chain entries in list order, array elements by index, an array's bytes before
 * its elements' objects), then the next root. The stack holds at most three items per level of
 * depth (an object, an array, a chain), plus the roots and, at the deepest level, an object and
 * a copy: 3 * max_depth + 3, so 195 for PLAN_MAX_DEPTH.
 *
 * Nothing in the plan is trusted: every index read from it is masked before use, every address
 * is checked to be in the kernel half and read with bpf_probe_read_kernel, and a failed read is
 * counted in result.faults and skips only what depended on it.
 *
 * One file past 400 lines on purpose: the steps of the one bpf_loop share its work stack and
 * budgets, and ids/kernel/testing/plan_interpreter.ts mirrors them step for step.
 */
#ifndef EBPFMON_PLAN_WALK_H
#define EBPFMON_PLAN_WALK_H

/* bpf_loop's own limit (BPF_MAX_LOOPS). */
#define PLAN_MAX_STEPS (1 << 23)
/*
 * Lowest address of the kernel half on x86-64, as the agent set it for the guest's paging mode:
 * 0xffff800000000000 with 4 levels, 0xff00000000000000 with 5 (LA57).
 */
#define KERNEL_MIN config.kernel_min

#define ITEM_ROOTS 0  /* index: next root */
#define ITEM_OBJECT 1 /* addr: object; index: next slot, its ranges then its edges */
#define ITEM_COPY 2   /* addr: next byte; cursor: bytes left */
#define ITEM_LIST 3   /* addr: list head; cursor: next entry; index: entries visited */
#define ITEM_CHAIN 4  /* cursor: next entry; index: entries visited */
#define ITEM_ARRAY 5  /* addr: first element; cursor: elements; index: next element */
/* ITEM_ARRAY also walks SLOTS edges: addr is the first slot, cursor the slots. */

struct plan_item {
	__u64 addr;
	__u64 cursor;
	__u32 index;
	__u8 kind;  /* ITEM_* */
	__u8 node;  /* OBJECT: its node; LIST, CHAIN, ARRAY: the node whose edge this is */
	__u8 edge;  /* LIST, CHAIN, ARRAY: the edge */
	__u8 depth; /* OBJECT: hops from its root; LIST, CHAIN, ARRAY: of the objects they visit */
	__u32 copied; /* sparse ARRAY: elements below this index are copied */
	__u32 pad;
};

/*
 * The work stack. Only the agent's trigger thread runs a walk, so one copy is enough; it keeps a
 * walk the full ring stopped for EBPFMON_OP_RESUME (walk.h).
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256); /* resized by the agent before load */
	__type(key, __u32);
	__type(value, struct plan_item);
} plan_stack SEC(".maps");

/* One slot of plan_seen: the (address, node) last visited there, and in which request. */
struct plan_seen_slot {
	__u64 addr;
	__u32 node;
	__u32 pad;
	__u64 seq;
};

/*
 * What nodes that dedupe have visited: a direct-mapped table, each (address, node) in the slot
 * its hash picks, an entry from an earlier request stale by its seq, so nothing is cleared
 * between requests. An array lookup costs a few instructions where a hash map update takes a
 * lock; two objects that share a slot evict each other, so a walk may copy an object twice,
 * never loops for ever (every walk is bounded anyway).
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536); /* resized by the agent before load, with config.seen_mask */
	__type(key, __u32);
	__type(value, struct plan_seen_slot);
} plan_seen SEC(".maps");

/*
 * The slot of (addr, node) in plan_seen, or NULL. The node goes into the low bits: the slot is
 * taken from bits 32.. of the product, which no input bit above them changes.
 */
static __always_inline struct plan_seen_slot *seen_slot(__u64 addr, __u32 node)
{
	__u64 h = ((addr >> 3) ^ node) * 0x9e3779b97f4a7c15ULL;
	__u32 i = (__u32)(h >> 32) & config.seen_mask;

	return bpf_map_lookup_elem(&plan_seen, &i);
}

/* Whether (addr, node) was visited in request seq. */
static __always_inline int seen_in(__u64 addr, __u32 node, __u64 seq)
{
	struct plan_seen_slot *slot = seen_slot(addr, node);

	return slot && slot->seq == seq && slot->addr == addr && slot->node == node;
}

/*
 * The record being copied, and the walk's small state beside it (saved in walk_progress at the
 * end of each run: the next may run on another CPU). bpf_ringbuf_reserve takes only
 * a constant size, so a chunk is read here first and output with its exact length; 16 KiB is far
 * beyond the 512-byte BPF stack, hence a per-CPU map (a walk runs on one CPU: programs run with
 * migration disabled).
 */
struct plan_scratch {
	__u32 sp;        /* items on the stack */
	__u32 max_depth; /* the plan's, at most PLAN_MAX_DEPTH */
	struct ebpfmon_record rec;
	__u8 bytes[PLAN_CHUNK];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct plan_scratch);
} plan_scratch SEC(".maps");

#define plan shared.plan

static __always_inline __u32 min_u32(__u32 a, __u32 b)
{
	return a < b ? a : b;
}

static __always_inline struct plan_node *node_at(__u32 n)
{
	return &plan.nodes[n & (PLAN_MAX_NODES - 1)];
}

static __always_inline struct plan_edge *edge_at(__u32 n, __u32 e)
{
	return &node_at(n)->edges[e & (PLAN_MAX_EDGES - 1)];
}

/* Reads a little-endian number of `size` bytes (at most 8); false when unreadable (counted). */
static __always_inline int read_num(__u64 addr, __u32 size, __u64 *out)
{
	*out = 0;
	if (size > 8)
		size = 8;
	if (addr < KERNEL_MIN || bpf_probe_read_kernel(out, size, (const void *)addr)) {
		result.faults++;
		return 0;
	}
	return 1;
}

/* The item on top of the stack, or NULL when it is empty. */
static __always_inline struct plan_item *top_item(struct plan_scratch *s)
{
	__u32 i = s->sp - 1;

	return s->sp ? bpf_map_lookup_elem(&plan_stack, &i) : NULL;
}

/* Pushes an item on top of the stack, or stops the walk with STACK_FULL when it is full. */
static __always_inline void push(struct plan_scratch *s, __u8 kind, __u64 addr, __u64 cursor,
				 __u32 node, __u32 edge, __u32 depth)
{
	__u32 i = s->sp;
	struct plan_item *item = bpf_map_lookup_elem(&plan_stack, &i);

	if (!item) {
		result.stop = EBPFMON_STOP_STACK_FULL;
		return;
	}
	s->sp = i + 1;
	item->addr = addr;
	item->cursor = cursor;
	item->index = 0;
	item->copied = 0;
	item->kind = kind;
	item->node = node & (PLAN_MAX_NODES - 1);
	item->edge = edge & (PLAN_MAX_EDGES - 1);
	item->depth = depth;
}

static __always_inline void push_copy(struct plan_scratch *s, __u64 addr, __u64 len)
{
	if (len)
		push(s, ITEM_COPY, addr, len, 0, 0, 0);
}

/*
 * Copies up to PLAN_CHUNK bytes at src as one record, like emit() but with the exact length.
 * Returns the bytes consumed (copied, or skipped after a counted fault), or -1 when a budget or
 * the ring ran out (the walk stops).
 */
static __always_inline long copy_chunk(struct plan_scratch *s, __u64 src, __u64 len)
{
	__u32 n = len > PLAN_CHUNK ? PLAN_CHUNK : len;

	if (result.objects >= request.max_objects) {
		result.stop = EBPFMON_STOP_MAX_OBJECTS;
		return -1;
	}
	if (result.bytes + n > request.max_bytes) {
		result.stop = EBPFMON_STOP_MAX_BYTES;
		return -1;
	}
	if (src < KERNEL_MIN || bpf_probe_read_kernel(s->bytes, n, (const void *)src)) {
		result.faults++;
		return n;
	}
	s->rec.addr = src;
	s->rec.len = n;
	s->rec.pad = 0;
	if (bpf_ringbuf_output(&records, &s->rec, sizeof(s->rec) + n, BPF_RB_NO_WAKEUP)) {
		result.stop = EBPFMON_STOP_RING_FULL;
		return -1;
	}
	result.objects++;
	result.bytes += n;
	return n;
}

/* Whether the field of `size` bytes at obj + off passes condition `cond` (PLAN_COND_*). */
static __always_inline int cond_check(__u32 cond, __u32 size, __u32 off, __u64 mask, __u64 value,
				      __u64 obj)
{
	__u64 v;

	if (cond == PLAN_COND_NONE)
		return 1;
	if (!read_num(obj + off, size, &v))
		return 0;
	if (cond == PLAN_COND_EQ)
		return (v & mask) == value;
	if (cond == PLAN_COND_IN_SET)
		return v < 32 && ((mask >> v) & 1);
	if (cond == PLAN_COND_NE)
		return (v & mask) != value;
	if (cond == PLAN_COND_DIFF) {
		__u64 w;

		return size == 8 && read_num(obj + mask, 8, &w) && v - w == value;
	}
	return 0;
}

/* Whether an edge's condition lets it be followed from the object at obj. */
static __always_inline int cond_holds(const struct plan_edge *edge, __u64 obj)
{
	return cond_check(edge->cond, edge->cond_size, edge->cond_off, edge->cond_mask,
			  edge->cond_value, obj);
}

/*
 * Whether the object at addr was visited as node n, or as the node that covers n, in this
 * request: it is then not pushed at all, which saves the step that would pop it (step_object
 * checks again, for an object pushed twice before its first visit).
 */
static __always_inline int visited(__u64 addr, __u32 n)
{
	const struct plan_node *node = node_at(n);
	__u64 seq = request.seq;

	if (node->covered_by &&
	    seen_in(addr, (node->covered_by - 1) & (PLAN_MAX_NODES - 1), seq))
		return 1;
	return (node->flags & PLAN_FLAG_DEDUPE) && seen_in(addr, n & (PLAN_MAX_NODES - 1), seq);
}

/*
 * Objects are checked when found; lists, chains and arrays check each entry as they read it. An
 * object that fails its node's guard, or was visited already, is not pushed.
 */
static __always_inline void push_object(struct plan_scratch *s, __u64 addr, __u32 node,
					__u32 depth)
{
	const struct plan_node *target = node_at(node);

	if (addr < KERNEL_MIN) {
		result.faults++;
		return;
	}
	if (visited(addr, node))
		return;
	if (target->guard.cond != PLAN_COND_NONE &&
	    !cond_check(target->guard.cond, target->guard.size, target->guard.off,
			target->guard.mask, target->guard.value, addr))
		return;
	push(s, ITEM_OBJECT, addr, 0, node, 0, depth);
}

static __always_inline int chain_end(__u64 p, int nulls)
{
	return !p || (nulls && (p & 1));
}

/* Follows edge e of node n from the object at obj, which is `depth` hops from its root. */
static __always_inline void follow_edge(struct plan_scratch *s, __u64 obj, __u32 n, __u32 e,
					__u32 depth)
{
	const struct plan_edge *edge = edge_at(n, e);
	__u32 target = edge->target & (PLAN_MAX_NODES - 1);
	__u64 p, count;

	if (!cond_holds(edge, obj))
		return;
	if (depth >= s->max_depth) {
		result.pruned++;
		return;
	}
	if (!read_num(obj + edge->off, 8, &p))
		return;
	switch (edge->kind) {
	case PLAN_EDGE_PTR:
		if (p)
			push_object(s, p - edge->delta, target, depth + 1);
		break;
	case PLAN_EDGE_LIST:
		if (p != obj + edge->off)
			push(s, ITEM_LIST, obj + edge->off, p, n, e, depth + 1);
		break;
	case PLAN_EDGE_HLIST:
	case PLAN_EDGE_HNULLS:
		if (!chain_end(p, edge->kind == PLAN_EDGE_HNULLS))
			push(s, ITEM_CHAIN, 0, p, n, e, depth + 1);
		break;
	case PLAN_EDGE_ARRAY:
		if (!p || !read_num(obj + edge->aux, edge->count_size, &count))
			return;
		if (edge->flags & PLAN_FLAG_COUNT_IS_MASK)
			count++;
		if (count > edge->max)
			count = edge->max;
		if (!count)
			return;
		/* The IDS reads the elements too: copy them first (pushed last, so on top). */
		push(s, ITEM_ARRAY, p, count, n, e, depth + 1);
		if (!(edge->flags & PLAN_FLAG_SPARSE))
			push_copy(s, p, count * edge->stride);
		break;
	case PLAN_EDGE_SLOTS:
		if (edge->max)
			push(s, ITEM_ARRAY, obj + edge->off, edge->max, n, e, depth + 1);
		break;
	case PLAN_EDGE_BYTES:
		if (!p || !read_num(obj + edge->aux, edge->count_size, &count))
			return;
		if (edge->flags & PLAN_FLAG_BITS)
			count = (count >> 3) + ((count & 7) != 0);
		push_copy(s, p, count < edge->max ? count : edge->max);
		break;
	}
}

static __always_inline void step_roots(struct plan_scratch *s, struct plan_item *top)
{
	__u32 i = top->index, nroots = min_u32(plan.nroots, PLAN_MAX_ROOTS);
	const struct plan_root *root = &plan.roots[i & (PLAN_MAX_ROOTS - 1)];

	if (i + 1 < nroots)
		top->index = i + 1;
	else
		s->sp--;
	if (i < nroots)
		push_object(s, root->addr, root->node, 0);
}

static __always_inline void step_object(struct plan_scratch *s, struct plan_item *top)
{
	__u32 n = top->node & (PLAN_MAX_NODES - 1), slot = top->index, depth = top->depth;
	const struct plan_node *node = node_at(n);
	__u32 nranges = min_u32(node->nranges, PLAN_MAX_RANGES);
	__u32 slots = nranges + min_u32(node->nedges, PLAN_MAX_EDGES);
	__u64 obj = top->addr, seq = request.seq;
	struct plan_seen_slot *slot0, *marked = NULL;

	if (slot == 0 && node->covered_by &&
	    seen_in(obj, (node->covered_by - 1) & (PLAN_MAX_NODES - 1), seq)) {
		s->sp--;
		return;
	}
	if (slot == 0 && (node->flags & PLAN_FLAG_DEDUPE)) {
		slot0 = seen_slot(obj, n);
		if (slot0) {
			if (slot0->seq == seq && slot0->addr == obj && slot0->node == n) {
				s->sp--;
				return;
			}
			slot0->addr = obj;
			slot0->node = n;
			slot0->seq = seq;
			marked = slot0;
		}
	}
	if (slot < nranges) {
		const struct plan_range *r = &node->ranges[slot & (PLAN_MAX_RANGES - 1)];

		/*
		 * A range of one chunk is copied in this step, not by a copy step of its own. When a
		 * budget or the ring stops it, the object is left as it was (and not marked visited):
		 * the next run does this step again.
		 */
		if (r->len && r->len <= PLAN_CHUNK) {
			if (copy_chunk(s, obj + r->off, r->len) < 0) {
				if (marked)
					marked->seq = 0;
				return;
			}
			if (slot + 1 < slots)
				top->index = slot + 1;
			else
				s->sp--;
			return;
		}
	}
	/* Leave the object for its next slot, or pop it, before pushing what this slot finds. */
	if (slot + 1 < slots)
		top->index = slot + 1;
	else
		s->sp--;
	if (slot < nranges) {
		const struct plan_range *r = &node->ranges[slot & (PLAN_MAX_RANGES - 1)];

		push_copy(s, obj + r->off, r->len);
	} else if (slot < slots) {
		follow_edge(s, obj, n, slot - nranges, depth);
	}
}

/* One list or chain entry: visit it, move to the next. */
static __always_inline void step_entry(struct plan_scratch *s, struct plan_item *top)
{
	const struct plan_edge *edge = edge_at(top->node, top->edge);
	int nulls = edge->kind == PLAN_EDGE_HNULLS ||
		    (edge->kind == PLAN_EDGE_ARRAY && edge->elem == PLAN_ELEM_HNULLS);
	__u64 e = top->cursor, next;
	__u32 depth = top->depth;

	if ((top->kind == ITEM_LIST ? e == top->addr : chain_end(e, nulls)) ||
	    top->index >= edge->max || !read_num(e, 8, &next)) {
		s->sp--;
		return;
	}
	top->cursor = next;
	top->index++;
	push_object(s, e - edge->delta, edge->target, depth);
}

/* Elements of a sparse pointer array read at once, so that a run of NULLs costs one step. */
#define SPARSE_WINDOW 8

/*
 * The first of the `n` elements of `window` that push_object would push or count as a fault:
 * not NULL, and not an object of the edge's target visited already; n when none is.
 */
static __always_inline __u32 next_to_visit(const __u64 *window, __u32 n,
					   const struct plan_edge *edge)
{
	__u32 j;
	__u64 v;

	for (j = 0; j < SPARSE_WINDOW; j++) {
		if (j >= n)
			break;
		v = window[j];
		if (v && (v - edge->delta < KERNEL_MIN || !visited(v - edge->delta, edge->target)))
			break;
	}
	return j < n ? j : n;
}

/*
 * Reads up to SPARSE_WINDOW elements of the array (or slots) of `top` from top->index into
 * `window`: their count, 0 past the end (the item is then popped), or -1 when they cannot be
 * read.
 */
static __always_inline int read_window(struct plan_scratch *s, struct plan_item *top,
				       __u64 *window)
{
	__u64 i = top->index, at = top->addr + i * 8, left;
	__u32 n;

	if (i >= top->cursor) {
		s->sp--;
		return 0;
	}
	left = top->cursor - i;
	n = left < SPARSE_WINDOW ? left : SPARSE_WINDOW;
	if (at < KERNEL_MIN || bpf_probe_read_kernel(window, (n & (SPARSE_WINDOW * 2 - 1)) * 8,
						     (const void *)at))
		return -1;
	return n;
}

/* Moves `top` past the `n` elements from its index, popping it at the end of its array. */
static __always_inline void pass(struct plan_scratch *s, struct plan_item *top, __u32 n)
{
	if (top->index + n < top->cursor)
		top->index += n;
	else
		s->sp--;
}

/*
 * The next element of an array of plain pointers (stride 8) to visit, in one step: reads up to
 * SPARSE_WINDOW elements and visits the first one that is not NULL and leads to an object not
 * visited yet (the others cost no step of their own), or passes them all. A sparse array's
 * elements are copied here (a whole one's were, with its object): the elements this step passes,
 * up to the one it visits or the whole window, from the first of them not copied yet to the
 * window's last non-NULL one, as one record, before the objects (top->copied remembers how far;
 * a full ring leaves the step undone). Returns 0 when the window cannot be read: the caller then
 * takes the element alone.
 */
static __always_inline int step_ptrs(struct plan_scratch *s, struct plan_item *top,
				     const struct plan_edge *edge)
{
	__u64 window[SPARSE_WINDOW];
	__u64 i = top->index;
	__u32 c, j, x, last;
	int n = read_window(s, top, window);

	if (n <= 0)
		return n == 0;
	j = next_to_visit(window, n, edge);
	if (edge->flags & PLAN_FLAG_SPARSE) {
		for (c = 0; c < SPARSE_WINDOW; c++) {
			if (c >= n || c > j || (window[c] && i + c >= top->copied))
				break;
		}
		if (c < n && c <= j) {
			last = c;
			for (x = c + 1; x < SPARSE_WINDOW; x++) {
				if (x < n && window[x])
					last = x;
			}
			if (copy_chunk(s, top->addr + (i + c) * 8, (last - c + 1) * 8) < 0)
				return 1;
			top->copied = i + last + 1;
		}
	}
	if (j >= n) {
		pass(s, top, n);
		return 1;
	}
	pass(s, top, j + 1);
	push_object(s, window[j & (SPARSE_WINDOW - 1)] - edge->delta, edge->target, top->depth);
	return 1;
}

/*
 * The next slot of a SLOTS edge that holds an entry of the edge's kind, in one step: reads up to
 * SPARSE_WINDOW slots and visits the first entry, or skips them all (an xarray node's 64 slots
 * then cost 8 steps, not 64). Nothing is copied: the slots are part of their object. Returns 0
 * when the window cannot be read: the caller then takes the slot alone.
 */
static __always_inline int step_slots(struct plan_scratch *s, struct plan_item *top,
				      const struct plan_edge *edge)
{
	__u64 window[SPARSE_WINDOW];
	__u64 v = 0;
	__u32 k;
	int n = read_window(s, top, window);

	if (n <= 0)
		return n == 0;
	for (k = 0; k < SPARSE_WINDOW; k++) {
		if (k >= n)
			break;
		v = window[k];
		if (v && (v & edge->aux) == edge->stride && v - edge->delta >= KERNEL_MIN)
			break;
	}
	if (k >= n) {
		pass(s, top, n);
		return 1;
	}
	pass(s, top, k + 1);
	push_object(s, v - edge->delta, edge->target, top->depth);
	return 1;
}

/* One array element (a pointer to an object, or the head of a chain), or one slot. */
static __always_inline void step_array(struct plan_scratch *s, struct plan_item *top)
{
	const struct plan_edge *edge = edge_at(top->node, top->edge);
	int slots = edge->kind == PLAN_EDGE_SLOTS;
	__u64 i = top->index, v, at;
	__u32 n = top->node, e = top->edge, depth = top->depth;

	if (slots && step_slots(s, top, edge))
		return;
	if (!slots && edge->elem == PLAN_ELEM_PTR && edge->stride == 8 && edge->elem_off == 0 &&
	    step_ptrs(s, top, edge))
		return;

	if (i + 1 < top->cursor)
		top->index = i + 1;
	else
		s->sp--;
	at = slots ? top->addr + i * 8 : top->addr + i * edge->stride + edge->elem_off;
	if (i >= top->cursor || !read_num(at, 8, &v))
		return;
	if (slots) {
		if (v && (v & edge->aux) == edge->stride && v - edge->delta >= KERNEL_MIN)
			push_object(s, v - edge->delta, edge->target, depth);
		return;
	}
	if (edge->elem == PLAN_ELEM_PTR) {
		if (!v)
			return;
		push_object(s, v - edge->delta, edge->target, depth);
		/* Sparse: this element alone is copied (on top, so before its object). */
		if (edge->flags & PLAN_FLAG_SPARSE)
			push_copy(s, at, 8);
	} else if (!chain_end(v, edge->elem == PLAN_ELEM_HNULLS)) {
		push(s, ITEM_CHAIN, 0, v, n, e, depth);
	}
}

static __always_inline void step_copy(struct plan_scratch *s, struct plan_item *top)
{
	long done = copy_chunk(s, top->addr, top->cursor);

	if (done < 0)
		return;
	if (done < top->cursor) {
		top->addr += done;
		top->cursor -= done;
	} else {
		s->sp--;
	}
}

static long plan_step(__u64 index, void *unused)
{
	__u32 zero = 0;
	struct plan_scratch *s = bpf_map_lookup_elem(&plan_scratch, &zero);
	struct plan_item *top;

	if (!s)
		return 1;
	top = top_item(s);
	if (!top)
		return 1;
	switch (top->kind) {
	case ITEM_ROOTS:
		step_roots(s, top);
		break;
	case ITEM_OBJECT:
		step_object(s, top);
		break;
	case ITEM_COPY:
		step_copy(s, top);
		break;
	case ITEM_LIST:
	case ITEM_CHAIN:
		step_entry(s, top);
		break;
	case ITEM_ARRAY:
		step_array(s, top);
		break;
	default:
		s->sp--;
	}
	return result.stop != EBPFMON_STOP_COMPLETE;
}

SEC("uprobe")
int walk_plan(struct pt_regs *ctx)
{
	struct ebpfmon_progress *p = progress();
	__u32 zero = 0;
	struct plan_scratch *s;
	__u64 started;
	long done;
	int run;

	if (!p)
		return 0;
	run = run_of(EBPFMON_OP_PLAN, p);
	if (!run)
		return 0;
	started = begin(run);
	s = bpf_map_lookup_elem(&plan_scratch, &zero);
	if (!s)
		goto out;
	if (run == RUN_RESUME) {
		/* plan_stack holds the walk; its size and depth were this request's last run's. */
		s->sp = p->sp;
		s->max_depth = p->max_depth;
	} else {
		if (!plan.nroots) {
			result.stop = EBPFMON_STOP_NO_ROOT;
			goto out;
		}
		result.root = plan.roots[0].addr;
		s->sp = 0;
		s->max_depth = min_u32(plan.max_depth, PLAN_MAX_DEPTH);
		p->steps = 0;
		push(s, ITEM_ROOTS, 0, 0, 0, 0, 0);
		if (result.stop != EBPFMON_STOP_COMPLETE)
			goto save;
	}
	done = bpf_loop(p->steps < PLAN_MAX_STEPS ? PLAN_MAX_STEPS - p->steps : 0, plan_step, NULL,
			0);
	/* The step that found the ring full left its item as it was: the next run does it again. */
	if (done > 0 && result.stop == EBPFMON_STOP_RING_FULL)
		done--;
	if (done > 0)
		p->steps += done;
	if (s->sp && result.stop == EBPFMON_STOP_COMPLETE)
		result.stop = EBPFMON_STOP_STEPS;
save:
	p->sp = s->sp;
	p->max_depth = s->max_depth;
out:
	end(started, EBPFMON_OP_PLAN, p);
	return 0;
}

#undef plan

#endif
