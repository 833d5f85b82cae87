/**
 * A reference interpreter of walk plans, for tests: it walks a plan over a memory image step for
 * step as the in-guest walker does (bpf/plan.h, bpf/plan_walk.h), with the same work stack, the
 * same direct-mapped dedupe table, the same budgets and the same bpf_loop step limit, so that it
 * copies the same records in the same order, and stops for the same reason with the same counts
 * (tests/plan_equivalence_test.ts holds it to that against the real walker on this machine's
 * kernel). A view run over what it copied, with `CachedMemory`, then proves the plan covers
 * everything the view reads ({@linkcode checkPlan}).
 *
 * One file past 400 lines on purpose: it mirrors bpf/plan_walk.h step for step, and is read
 * beside it.
 *
 * @module
 */

import {
  CondKind,
  decodePlan,
  EdgeKind,
  ElemKind,
  encodePlan,
  type Plan,
  PLAN_LIMITS,
  type PlanCondition,
  type PlanEdge,
  type PlanNode,
  StopReason,
} from "../../../protocol/mod.ts";
import {
  AddressSpace,
  CachedMemory,
  type GuestMemory,
  type KAddr,
  MemoryCache,
  type Span,
} from "../../memory/mod.ts";
import { type CopyMode, PlanBuilder } from "../mod.ts";

/**
 * Guest memory as the walker reads it: the `len` bytes at `addr` (an address of the kernel
 * half), or undefined where its bpf_probe_read_kernel of them would fail. `copied` is how many
 * records the walk has copied before this read (a record's own copy reads with its index): a
 * memory that replays a walk's records answers as the memory was at that point of the walk.
 */
export interface PlanMemory {
  read(addr: bigint, len: number, copied: number): Uint8Array | undefined;
}

/** The walker's limits and sizes that change what a walk copies (agent/walker.ts's options). */
export interface InterpretOptions {
  /** The request's budget of records. @default Number.MAX_SAFE_INTEGER */
  maxObjects?: number;
  /** The request's budget of bytes. @default Number.MAX_SAFE_INTEGER */
  maxBytes?: number;
  /** Items the work stack holds (`WalkerOptions.stackItems`). @default 256 */
  stackItems?: number;
  /** Slots of the dedupe table, a power of two (`WalkerOptions.dedupeEntries`). @default 262144 */
  dedupeEntries?: number;
  /**
   * How the memory's addresses are numbered; its kernel half is the walker's bound for slots
   * (its `kernel_min`). @default 4-level
   */
  space?: AddressSpace;
}

/** One record of a walk: the bytes copied at an address. */
export interface PlanRecord {
  addr: bigint;
  bytes: Uint8Array;
}

/** What a walk copied, and how it ended: the walker's result. */
export interface InterpretResult {
  /** The records, by address. */
  cache: MemoryCache;
  /** The records in the order the walker emits them. */
  records: PlanRecord[];
  /** Records copied (`result.objects`). */
  objects: number;
  /** Bytes copied (`result.bytes`). */
  bytes: number;
  /** Reads that failed, or addresses outside the kernel half (`result.faults`). */
  faults: number;
  /** Edges not followed because they lead deeper than the plan allows (`result.pruned`). */
  pruned: number;
  /** Why the walk stopped (`result.stop`). */
  stop: StopReason;
  /** bpf_loop iterations the walk took, every run of it together. */
  steps: number;
}

/** The walker's largest single copy (PLAN_CHUNK). */
const CHUNK = 16384;
/** bpf_loop's limit on the walk's steps (PLAN_MAX_STEPS). */
const MAX_STEPS = 1 << 23;
/** Elements of a sparse array read at once (SPARSE_WINDOW). */
const WINDOW = 8;
/** The multiplier of the dedupe table's hash (seen_slot). */
const GOLDEN = 0x9e3779b97f4a7c15n;
const U64 = (1n << 64n) - 1n;
const NODE_MASK = PLAN_LIMITS.nodes - 1;
const EDGE_MASK = PLAN_LIMITS.edges - 1;

/** The work items of plan_walk.h (ITEM_*). */
const Item = { ROOTS: 0, OBJECT: 1, COPY: 2, LIST: 3, CHAIN: 4, ARRAY: 5 } as const;

/** One item of the work stack (struct plan_item). */
interface WorkItem {
  kind: number;
  addr: bigint;
  cursor: bigint;
  index: number;
  node: number;
  edge: number;
  depth: number;
  copied: number;
}

/** A node index past the plan's nodes reads as the walker's zeroed node: nothing to do. */
const EMPTY: PlanNode = { dedupe: false, ranges: [], edges: [] };

const u64 = (v: bigint) => v & U64;
const chainEnd = (p: bigint, nulls: boolean) => p === 0n || (nulls && (p & 1n) === 1n);

function imageOf(image: MemoryCache, space: AddressSpace): PlanMemory {
  return {
    read(addr, len) {
      const at = space.toKAddr(addr);
      return at === undefined ? undefined : image.get(at, len);
    },
  };
}

function littleEndian(bytes: Uint8Array): bigint {
  let v = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]);
  return v;
}

/**
 * Walks `plan` over `memory` (an image, or any {@linkcode PlanMemory}) and returns what the
 * walker, given the same memory and options, would have copied: a walk stopped by a full ring
 * and resumed (`Walker.resume`) included.
 */
export function interpretPlan(
  plan: Plan,
  memory: MemoryCache | PlanMemory,
  options: InterpretOptions = {},
): InterpretResult {
  const space = options.space ?? AddressSpace.FOUR_LEVEL;
  const mem = memory instanceof MemoryCache ? imageOf(memory, space) : memory;
  const maxObjects = options.maxObjects ?? Number.MAX_SAFE_INTEGER;
  const maxBytes = options.maxBytes ?? Number.MAX_SAFE_INTEGER;
  const stackItems = options.stackItems ?? 256;
  const seenMask = BigInt((options.dedupeEntries ?? 1 << 18) - 1);
  const maxDepth = Math.min(plan.maxDepth, PLAN_LIMITS.depth);
  const out: InterpretResult = {
    cache: new MemoryCache(),
    records: [],
    objects: 0,
    bytes: 0,
    faults: 0,
    pruned: 0,
    stop: StopReason.COMPLETE,
    steps: 0,
  };
  const stack: WorkItem[] = [];
  /** plan_seen: slot -> the (address, node) last visited there. */
  const seen = new Map<number, { addr: bigint; node: number }>();

  const nodeAt = (n: number) => plan.nodes[n & NODE_MASK] ?? EMPTY;
  const edgeAt = (n: number, e: number) => nodeAt(n).edges[e & EDGE_MASK];
  const load = (addr: bigint, len: number) =>
    addr < space.kernelHalf ? undefined : mem.read(addr, len, out.objects);
  /** read_num: a little-endian number, or undefined (a fault, counted). */
  const readNum = (addr: bigint, size: number): bigint | undefined => {
    const bytes = load(addr, Math.min(size, 8));
    if (!bytes) {
      out.faults++;
      return undefined;
    }
    return littleEndian(bytes);
  };
  /** cond_check: whether the field `cond` names in the object at `obj` passes it. */
  const passes = (cond: PlanCondition | undefined, obj: bigint): boolean => {
    if (!cond) return true;
    const v = readNum(u64(obj + BigInt(cond.off)), cond.size);
    if (v === undefined) return false;
    if (cond.kind === CondKind.EQ) return (v & cond.mask) === (cond.value ?? 0n);
    if (cond.kind === CondKind.IN_SET) return v < 32n && ((cond.mask >> v) & 1n) === 1n;
    if (cond.kind === CondKind.NE) return (v & cond.mask) !== (cond.value ?? 0n);
    if (cond.kind === CondKind.DIFF) {
      const w = cond.size === 8 ? readNum(u64(obj + cond.mask), 8) : undefined;
      return w !== undefined && u64(v - w) === (cond.value ?? 0n);
    }
    return false;
  };
  const slotOf = (addr: bigint, node: number) =>
    Number((u64(((addr >> 3n) ^ BigInt(node)) * GOLDEN) >> 32n) & seenMask);
  const seenAt = (addr: bigint, node: number) => {
    const slot = seen.get(slotOf(addr, node));
    return slot !== undefined && slot.addr === addr && slot.node === node;
  };

  const push = (kind: number, addr: bigint, cursor: bigint, node = 0, edge = 0, depth = 0) => {
    if (stack.length >= stackItems) {
      out.stop = StopReason.STACK_FULL;
      return;
    }
    stack.push({
      kind,
      addr,
      cursor,
      index: 0,
      node: node & NODE_MASK,
      edge: edge & EDGE_MASK,
      depth,
      copied: 0,
    });
  };
  /** visited: an object seen as its node, or as the node covering it, is not pushed. */
  const visited = (addr: bigint, n: number) => {
    const node = nodeAt(n);
    return (node.coveredBy !== undefined && seenAt(addr, node.coveredBy & NODE_MASK)) ||
      (node.dedupe && seenAt(addr, n & NODE_MASK));
  };
  /** push_object: an object that fails its node's guard, or was visited, is not pushed. */
  const pushObject = (addr: bigint, node: number, depth: number) => {
    if (addr < space.kernelHalf) {
      out.faults++;
      return;
    }
    if (visited(addr, node)) return;
    const guard = nodeAt(node).guard;
    if (guard !== undefined && !passes(guard, addr)) return;
    push(Item.OBJECT, addr, 0n, node, 0, depth);
  };
  const pushCopy = (addr: bigint, len: bigint) => {
    if (len) push(Item.COPY, addr, len);
  };

  /** follow_edge: edge `e` of node `n` from the object at `obj`, `depth` hops from its root. */
  const follow = (obj: bigint, n: number, e: number, depth: number) => {
    const edge = edgeAt(n, e);
    const target = edge.target & NODE_MASK;
    if (!passes(edge.cond, obj)) return;
    if (depth >= maxDepth) {
      out.pruned++;
      return;
    }
    const at = u64(obj + BigInt(edge.off));
    const p = readNum(at, 8);
    if (p === undefined) return;
    const count = () => p ? readNum(u64(obj + BigInt(edge.aux!)), edge.countSize!) : undefined;
    switch (edge.kind) {
      case EdgeKind.PTR:
        if (p) pushObject(u64(p - BigInt(edge.delta)), target, depth + 1);
        return;
      case EdgeKind.LIST:
        if (p !== at) push(Item.LIST, at, p, n, e, depth + 1);
        return;
      case EdgeKind.HLIST:
      case EdgeKind.HNULLS:
        if (!chainEnd(p, edge.kind === EdgeKind.HNULLS)) push(Item.CHAIN, 0n, p, n, e, depth + 1);
        return;
      case EdgeKind.ARRAY: {
        let c = count();
        if (c === undefined) return;
        if (edge.countIsMask) c = u64(c + 1n);
        if (c > BigInt(edge.max)) c = BigInt(edge.max);
        if (!c) return;
        // The elements' bytes are copied first: pushed last, so on top.
        push(Item.ARRAY, p, c, n, e, depth + 1);
        if (!edge.sparse) pushCopy(p, c * BigInt(edge.stride!));
        return;
      }
      case EdgeKind.SLOTS:
        if (edge.max) push(Item.ARRAY, at, BigInt(edge.max), n, e, depth + 1);
        return;
      case EdgeKind.BYTES: {
        let c = count();
        if (c === undefined) return;
        if (edge.bits) c = (c >> 3n) + ((c & 7n) !== 0n ? 1n : 0n);
        pushCopy(p, c < BigInt(edge.max) ? c : BigInt(edge.max));
        return;
      }
    }
  };

  const stepRoots = (top: WorkItem) => {
    const i = top.index;
    const nroots = Math.min(plan.roots.length, PLAN_LIMITS.roots);
    const root = plan.roots[i & (PLAN_LIMITS.roots - 1)];
    if (i + 1 < nroots) top.index = i + 1;
    else stack.pop();
    if (i < nroots) pushObject(root.addr, root.node, 0);
  };

  const stepObject = (top: WorkItem) => {
    const { node: n, index: slot, depth, addr: obj } = top;
    const node = nodeAt(n);
    const nranges = Math.min(node.ranges.length, PLAN_LIMITS.ranges);
    const slots = nranges + Math.min(node.edges.length, PLAN_LIMITS.edges);
    if (slot === 0) {
      const skip = node.coveredBy !== undefined && seenAt(obj, node.coveredBy & NODE_MASK);
      if (skip || (node.dedupe && seenAt(obj, n))) {
        stack.pop();
        return;
      }
      if (node.dedupe) seen.set(slotOf(obj, n), { addr: obj, node: n });
    }
    // A range of one chunk is copied in this step; when a budget stops it, the object is left as
    // it was, unmarked.
    const r = slot < nranges ? node.ranges[slot] : undefined;
    if (r && r.len > 0 && r.len <= CHUNK) {
      if (copyChunk(u64(obj + BigInt(r.off)), BigInt(r.len)) < 0) {
        if (slot === 0 && node.dedupe) seen.delete(slotOf(obj, n));
        return;
      }
      if (slot + 1 < slots) top.index = slot + 1;
      else stack.pop();
      return;
    }
    // Leave the object for its next slot, or pop it, before pushing what this slot finds.
    if (slot + 1 < slots) top.index = slot + 1;
    else stack.pop();
    if (slot < nranges) {
      const r = node.ranges[slot];
      pushCopy(u64(obj + BigInt(r.off)), BigInt(r.len));
    } else if (slot < slots) {
      follow(obj, n, slot - nranges, depth);
    }
  };

  /** step_entry: one list or chain entry. */
  const stepEntry = (top: WorkItem) => {
    const edge = edgeAt(top.node, top.edge);
    const nulls = edge.kind === EdgeKind.HNULLS ||
      (edge.kind === EdgeKind.ARRAY && edge.elem === ElemKind.HNULLS);
    const e = top.cursor;
    const end = top.kind === Item.LIST ? e === top.addr : chainEnd(e, nulls);
    const next = end || top.index >= edge.max ? undefined : readNum(e, 8);
    if (next === undefined) {
      stack.pop();
      return;
    }
    top.cursor = next;
    top.index++;
    pushObject(u64(e - BigInt(edge.delta)), edge.target, top.depth);
  };

  /**
   * next_to_visit: the first element of `window` that pushObject would push or count as a fault;
   * its length when none is.
   */
  const nextToVisit = (window: bigint[], edge: PlanEdge): number => {
    for (let j = 0; j < window.length; j++) {
      const v = window[j];
      if (v === 0n) continue;
      const target = u64(v - BigInt(edge.delta));
      if (target < space.kernelHalf || !visited(target, edge.target)) return j;
    }
    return window.length;
  };

  /**
   * read_window: up to WINDOW elements at top.index; an empty one past the end (the item is
   * then popped), undefined when unreadable.
   */
  const readWindow = (top: WorkItem): bigint[] | undefined => {
    if (BigInt(top.index) >= top.cursor) {
      stack.pop();
      return [];
    }
    const at = u64(top.addr + BigInt(top.index) * 8n);
    const left = top.cursor - BigInt(top.index);
    const n = left < WINDOW ? Number(left) : WINDOW;
    const bytes = load(at, n * 8);
    if (!bytes) return undefined;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return Array.from({ length: n }, (_, k) => view.getBigUint64(k * 8, true));
  };

  /** pass: moves `top` past `n` elements, popping it at the end of its array. */
  const pass = (top: WorkItem, n: number) => {
    if (BigInt(top.index + n) < top.cursor) top.index += n;
    else stack.pop();
  };

  /**
   * step_ptrs: the next element of a plain pointer array worth a visit, in one step, a sparse
   * array's passed elements copied first; false when the window is unreadable.
   */
  const stepPtrs = (top: WorkItem, edge: PlanEdge): boolean => {
    const i = top.index;
    const window = readWindow(top);
    if (!window?.length) return window !== undefined;
    const j = nextToVisit(window, edge);
    // The elements this step passes (up to the one it visits, or the whole window) must be
    // copied by now: from the first of them not copied yet to the window's last non-NULL one,
    // as one record, before the objects. A budget that stops it leaves the step.
    const c = edge.sparse
      ? window.findIndex((v, x) => x <= j && v !== 0n && i + x >= top.copied)
      : -1;
    if (c >= 0) {
      const last = window.findLastIndex((v) => v !== 0n);
      const at = u64(top.addr + BigInt(i + c) * 8n);
      if (copyChunk(at, BigInt(last - c + 1) * 8n) < 0) return true;
      top.copied = i + last + 1;
    }
    if (j >= window.length) {
      pass(top, window.length);
      return true;
    }
    pass(top, j + 1);
    pushObject(u64(window[j] - BigInt(edge.delta)), edge.target, top.depth);
    return true;
  };

  /** step_slots: the next slot of a window holding an entry; false when it is unreadable. */
  const stepSlots = (top: WorkItem, edge: PlanEdge): boolean => {
    const window = readWindow(top);
    if (!window?.length) return window !== undefined;
    const entry = (v: bigint) =>
      v !== 0n && (v & BigInt(edge.tagMask!)) === BigInt(edge.tagValue!) &&
      u64(v - BigInt(edge.delta)) >= space.kernelHalf;
    const k = window.findIndex(entry);
    if (k < 0) {
      pass(top, window.length);
      return true;
    }
    pass(top, k + 1);
    pushObject(u64(window[k] - BigInt(edge.delta)), edge.target, top.depth);
    return true;
  };

  /** step_array: one array element (a pointer, or a chain's head), or one slot. */
  const stepArray = (top: WorkItem) => {
    const edge = edgeAt(top.node, top.edge);
    const slots = edge.kind === EdgeKind.SLOTS;
    const { index: i, node: n, edge: e, depth } = top;
    const plain = !slots && edge.elem === ElemKind.PTR && edge.stride === 8 &&
      (edge.elemOffset ?? 0) === 0;
    if (slots && stepSlots(top, edge)) return;
    if (plain && stepPtrs(top, edge)) return;
    if (BigInt(i + 1) < top.cursor) top.index = i + 1;
    else stack.pop();
    const at = slots
      ? u64(top.addr + BigInt(i) * 8n)
      : u64(top.addr + BigInt(i) * BigInt(edge.stride!) + BigInt(edge.elemOffset ?? 0));
    const v = BigInt(i) >= top.cursor ? undefined : readNum(at, 8);
    if (v === undefined) return;
    const target = u64(v - BigInt(edge.delta));
    if (slots) {
      const tag = v & BigInt(edge.tagMask!);
      if (v && tag === BigInt(edge.tagValue!) && target >= space.kernelHalf) {
        pushObject(target, edge.target, depth);
      }
    } else if (edge.elem === ElemKind.PTR) {
      if (!v) return;
      pushObject(target, edge.target, depth);
      // Sparse: this element alone is copied (on top, so before its object).
      if (edge.sparse) pushCopy(at, 8n);
    } else if (!chainEnd(v, edge.elem === ElemKind.HNULLS)) {
      push(Item.CHAIN, 0n, v, n, e, depth);
    }
  };

  /**
   * copy_chunk: up to CHUNK bytes at `addr` as one record; the bytes consumed (copied, or skipped
   * after a counted fault), or -1 when a budget ran out (the walk stops).
   */
  const copyChunk = (addr: bigint, len: bigint): number => {
    const n = len > BigInt(CHUNK) ? CHUNK : Number(len);
    if (out.objects >= maxObjects) {
      out.stop = StopReason.MAX_OBJECTS;
      return -1;
    }
    if (out.bytes + n > maxBytes) {
      out.stop = StopReason.MAX_BYTES;
      return -1;
    }
    const bytes = load(addr, n);
    if (bytes) {
      const copy = bytes.slice();
      out.records.push({ addr, bytes: copy });
      out.cache.insert(space.toKAddr(addr)!, copy);
      out.objects++;
      out.bytes += n;
    } else {
      out.faults++;
    }
    return n;
  };

  /** step_copy: one chunk of a copy, unless a budget ran out. */
  const stepCopy = (top: WorkItem) => {
    const n = copyChunk(top.addr, top.cursor);
    if (n < 0) return;
    if (BigInt(n) < top.cursor) {
      top.addr = u64(top.addr + BigInt(n));
      top.cursor -= BigInt(n);
    } else {
      stack.pop();
    }
  };

  if (plan.roots.length === 0) {
    out.stop = StopReason.NO_ROOT;
    return out;
  }
  push(Item.ROOTS, 0n, 0n);
  while (out.steps < MAX_STEPS) {
    out.steps++;
    const top = stack[stack.length - 1];
    if (!top) break;
    if (top.kind === Item.ROOTS) stepRoots(top);
    else if (top.kind === Item.OBJECT) stepObject(top);
    else if (top.kind === Item.COPY) stepCopy(top);
    else if (top.kind === Item.ARRAY) stepArray(top);
    else stepEntry(top);
    if (out.stop !== StopReason.COMPLETE) break;
  }
  if (stack.length && out.stop === StopReason.COMPLETE) out.stop = StopReason.STEPS;
  return out;
}

/** A cache-only memory that records every read it could not serve. */
export class MissRecorder implements GuestMemory {
  readonly misses: { addr: KAddr; len: number }[] = [];
  #mem: CachedMemory;
  /** @param space the image's addresses @default 4-level */
  constructor(cache: MemoryCache, readonly space: AddressSpace = AddressSpace.FOUR_LEVEL) {
    this.#mem = new CachedMemory(cache, space);
  }
  peek(addr: KAddr, len: number): Uint8Array | undefined {
    return this.#mem.peek(addr, len);
  }
  peekSpan(addr: KAddr, len: number): Span | undefined {
    return this.#mem.peekSpan(addr, len);
  }
  peekRanges(
    addr: KAddr,
    out: Uint8Array,
    ranges: readonly { off: number; len: number }[],
  ): Uint8Array | undefined {
    return this.#mem.peekRanges(addr, out, ranges);
  }
  read(addr: KAddr, len: number): Promise<Uint8Array> {
    return this.#mem.read(addr, len).catch((error) => {
      this.misses.push({ addr, len });
      throw error;
    });
  }
}

/** What a view gave over the bytes one mode's plan copied. */
export interface PlanCheck<T> {
  result: T;
  /** Bytes the plan copied. */
  bytes: number;
  /** Reads the view made that the plan did not copy. */
  misses: { addr: KAddr; len: number }[];
  pruned: number;
}

/**
 * Builds a plan in each mode with `plan`, sends it through the wire codec, walks it over `image`
 * (numbered by `space`), and runs `view` over what it copied.
 */
export async function checkPlan<T>(
  image: MemoryCache,
  plan: (b: PlanBuilder) => void,
  view: (mem: GuestMemory) => Promise<T>,
  space: AddressSpace = AddressSpace.FOUR_LEVEL,
): Promise<Record<CopyMode, PlanCheck<T>>> {
  const out: Partial<Record<CopyMode, PlanCheck<T>>> = {};
  for (const mode of ["whole", "selective"] as const) {
    const b = new PlanBuilder(mode, space);
    plan(b);
    const walked = interpretPlan(decodePlan(encodePlan(b.build())), image, { space });
    const mem = new MissRecorder(walked.cache, space);
    const result = await view(mem);
    out[mode] = { result, bytes: walked.bytes, misses: mem.misses, pruned: walked.pruned };
  }
  return out as Record<CopyMode, PlanCheck<T>>;
}
