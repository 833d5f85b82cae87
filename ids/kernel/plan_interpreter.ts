/**
 * A reference interpreter of walk plans, for tests: it walks a plan over a memory image the way
 * the in-guest walker does (bpf/plan.h, bpf/plan_walk.h: depth first, dedupe per node and
 * address, covering nodes, guards, conditions, depth and entry bounds, arrays copied before their
 * elements, sparse arrays in runs) and copies
 * the bytes the plan names into a fresh {@linkcode MemoryCache}. A view run over that cache with
 * `CachedMemory` then proves the plan covers everything the view reads.
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
  type PlanCondition,
  type PlanEdge,
} from "../../protocol/mod.ts";
import { AddressSpace, type KAddr } from "../memory/address.ts";
import { MemoryCache, type Span } from "../memory/cache.ts";
import { CachedMemory, type GuestMemory } from "../memory/guest_memory.ts";
import { type CopyMode, PlanBuilder } from "./plan.ts";

/** What a walk copied. */
export interface InterpretResult {
  cache: MemoryCache;
  /** Bytes copied (each record's length), as the walker's `result.bytes`. */
  bytes: number;
  /** Records copied, as the walker's `result.objects`. */
  records: number;
  /** Reads that failed (not in the image, or not a kernel address). */
  faults: number;
  /** Edges not followed because they lead deeper than the plan allows. */
  pruned: number;
}

/** The walker's largest single copy (PLAN_CHUNK). */
const CHUNK = 16384;
/** Guard against a runaway test: the walker's own step limit (PLAN_MAX_STEPS). */
const MAX_STEPS = 1 << 23;

/**
 * Walks `plan` over `image` and returns what the walker would have copied; `space` numbers the
 * image's addresses, and its kernel half is the walker's bound for slots (its `kernel_min`).
 */
export function interpretPlan(
  plan: Plan,
  image: MemoryCache,
  space: AddressSpace = AddressSpace.FOUR_LEVEL,
): InterpretResult {
  const out: InterpretResult = {
    cache: new MemoryCache(),
    bytes: 0,
    records: 0,
    faults: 0,
    pruned: 0,
  };
  const seen = new Set<string>();
  let steps = 0;

  const num = (addr: bigint, size: number): bigint | undefined => {
    const at = space.toKAddr(addr);
    const bytes = at === undefined ? undefined : image.get(at, size);
    if (!bytes) {
      out.faults++;
      return undefined;
    }
    let v = 0n;
    for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]);
    return v;
  };

  const copy = (addr: bigint, len: bigint) => {
    for (let at = addr, left = len; left > 0n;) {
      const n = left > BigInt(CHUNK) ? CHUNK : Number(left);
      const k = space.toKAddr(at);
      const bytes = k === undefined ? undefined : image.get(k, n);
      if (bytes) {
        out.cache.insert(k!, bytes.slice());
        out.bytes += n;
        out.records++;
      } else {
        out.faults++;
      }
      at += BigInt(n);
      left -= BigInt(n);
    }
  };

  const passes = (cond: PlanCondition, obj: bigint): boolean => {
    const v = num(obj + BigInt(cond.off), cond.size);
    if (v === undefined) return false;
    if (cond.kind === CondKind.EQ) return (v & cond.mask) === cond.value;
    if (cond.kind === CondKind.NE) return (v & cond.mask) !== cond.value;
    return v < 32n && ((cond.mask >> v) & 1n) === 1n;
  };
  const holds = (edge: PlanEdge, obj: bigint): boolean => !edge.cond || passes(edge.cond, obj);

  const chainEnd = (p: bigint, nulls: boolean) => p === 0n || (nulls && (p & 1n) === 1n);

  const chain = (first: bigint, edge: PlanEdge, nulls: boolean, depth: number) => {
    let e = first;
    for (let i = 0; !chainEnd(e, nulls) && i < edge.max; i++) {
      const next = num(e, 8);
      if (next === undefined) return;
      visit(e - BigInt(edge.delta), edge.target, depth);
      e = next;
    }
  };

  const follow = (obj: bigint, edge: PlanEdge, depth: number) => {
    if (!holds(edge, obj)) return;
    if (depth >= plan.maxDepth) {
      out.pruned++;
      return;
    }
    const at = obj + BigInt(edge.off);
    const p = num(at, 8);
    if (p === undefined) return;
    switch (edge.kind) {
      case EdgeKind.PTR:
        if (p) visit(p - BigInt(edge.delta), edge.target, depth + 1);
        return;
      case EdgeKind.LIST: {
        let e = p;
        for (let i = 0; e !== at && i < edge.max; i++) {
          const next = num(e, 8);
          if (next === undefined) return;
          visit(e - BigInt(edge.delta), edge.target, depth + 1);
          e = next;
        }
        return;
      }
      case EdgeKind.HLIST:
      case EdgeKind.HNULLS:
        chain(p, edge, edge.kind === EdgeKind.HNULLS, depth + 1);
        return;
      case EdgeKind.ARRAY: {
        const raw = p ? num(obj + BigInt(edge.aux!), edge.countSize!) : undefined;
        if (raw === undefined) return;
        let count = raw + (edge.countIsMask ? 1n : 0n);
        if (count > BigInt(edge.max)) count = BigInt(edge.max);
        const stride = BigInt(edge.stride!);
        if (edge.sparse) {
          sparse(p, count, edge, depth + 1);
          return;
        }
        copy(p, count * stride);
        for (let i = 0n; i < count; i++) {
          const at = p + i * stride + BigInt(edge.elemOffset ?? 0);
          const v = num(at, 8);
          if (v === undefined) continue;
          if (edge.elem === ElemKind.PTR) {
            if (v) visit(v - BigInt(edge.delta), edge.target, depth + 1);
          } else {
            chain(v, edge, edge.elem === ElemKind.HNULLS, depth + 1);
          }
        }
        return;
      }
      case EdgeKind.SLOTS:
        for (let i = 0n; i < BigInt(edge.max); i++) {
          const v = num(at + i * 8n, 8);
          if (v === undefined) continue;
          const target = BigInt.asUintN(64, v - BigInt(edge.delta));
          if (
            v && (v & BigInt(edge.tagMask!)) === BigInt(edge.tagValue!) &&
            target >= space.kernelHalf
          ) {
            visit(target, edge.target, depth + 1);
          }
        }
        return;
      case EdgeKind.BYTES: {
        const raw = p ? num(obj + BigInt(edge.aux!), edge.countSize!) : undefined;
        const n = raw === undefined ? undefined : edge.bits ? (raw + 7n) / 8n : raw;
        if (n !== undefined) copy(p, n < BigInt(edge.max) ? n : BigInt(edge.max));
        return;
      }
    }
  };

  /**
   * A sparse array of `count` pointers at `p`, as step_sparse walks it: windows of 8 elements
   * from one past the last element visited; the first visit in a window copies the run from it
   * to the window's last non-NULL element, unless an earlier run holds it. A window that cannot
   * be read whole is taken one element at a time.
   */
  const sparse = (p: bigint, count: bigint, edge: PlanEdge, depth: number) => {
    let copied = 0n;
    for (let i = 0n; i < count;) {
      const n = count - i < 8n ? count - i : 8n;
      const at = space.toKAddr(p + i * 8n);
      const bytes = at === undefined ? undefined : image.get(at, Number(n) * 8);
      if (!bytes) {
        const v = num(p + i * 8n, 8);
        if (v) {
          copy(p + i * 8n, 8n);
          visit(v - BigInt(edge.delta), edge.target, depth);
        }
        i++;
        continue;
      }
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const window = Array.from({ length: Number(n) }, (_, k) => view.getBigUint64(k * 8, true));
      const k = window.findIndex((v) => v !== 0n);
      if (k < 0) {
        i += n;
        continue;
      }
      if (i + BigInt(k) >= copied) {
        const last = window.findLastIndex((v) => v !== 0n);
        copy(p + (i + BigInt(k)) * 8n, BigInt(last - k + 1) * 8n);
        copied = i + BigInt(last) + 1n;
      }
      visit(window[k] - BigInt(edge.delta), edge.target, depth);
      i += BigInt(k) + 1n;
    }
  };

  const visit = (addr: bigint, n: number, depth: number) => {
    if (++steps > MAX_STEPS) throw new RangeError("Cannot finish the plan: too many steps");
    addr = BigInt.asUintN(64, addr);
    if (space.toKAddr(addr) === undefined) {
      out.faults++;
      return;
    }
    const node = plan.nodes[n];
    if (node.guard && !passes(node.guard, addr)) return;
    if (node.coveredBy !== undefined && seen.has(`${node.coveredBy}:${addr}`)) return;
    if (node.dedupe) {
      const key = `${n}:${addr}`;
      if (seen.has(key)) return;
      seen.add(key);
    }
    for (const r of node.ranges) copy(addr + BigInt(r.off), BigInt(r.len));
    for (const edge of node.edges) follow(addr, edge, depth);
  };

  for (const root of plan.roots) visit(root.addr, root.node, 0);
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
    const walked = interpretPlan(decodePlan(encodePlan(b.build())), image, space);
    const mem = new MissRecorder(walked.cache, space);
    const result = await view(mem);
    out[mode] = { result, bytes: walked.bytes, misses: mem.misses, pruned: walked.pruned };
  }
  return out as Record<CopyMode, PlanCheck<T>>;
}
