/**
 * Builds walk plans (protocol/plan.ts) from the layouts the views read.
 *
 * A view's plan names the structures it visits (each a {@linkcode StructLayout}), the pointers
 * between them, and the roots. The builder turns that into what the in-guest walker copies:
 * whole structures (`"whole"`, the batched prefetch of the paper), or only the byte ranges of the
 * fields each layout declares (`"selective"`, fetching only what the IDS reads). Either way the
 * view then runs over the cache and finds every byte it reads.
 *
 * @module
 */

import {
  CondKind,
  EdgeKind,
  ElemKind,
  type FieldSize,
  type Plan,
  PLAN_LIMITS,
  type PlanCondition,
  type PlanEdge,
  type PlanNode,
} from "../../protocol/mod.ts";
import { AddressSpace, type KAddr } from "../memory/mod.ts";
import { GATHER_GAP, type ResolvedField, type StructLayout } from "./layout.ts";

/** What a prefetch copies of each visited structure. */
export type CopyMode = "whole" | "selective";

/**
 * Ranges closer than this are copied as one: a few bytes more on the wire, but fewer records to
 * copy, frame, decode and index. peekStruct gathers fields this close as one range.
 */
const MERGE_GAP = GATHER_GAP;
/**
 * In whole mode, ranges this close are copied as one when the gap lies inside the structure
 * (a copy of fields only, for a structure whose whole copy may run into unmapped memory): a
 * record costs more to frame, send and index than 256 bytes do.
 */
const WIDE_GAP = 256;

/** A node of a plan under construction: its index and the layout of its structure. */
export interface NodeRef<L extends StructLayout<unknown> = StructLayout<unknown>> {
  index: number;
  layout: L;
}

/** A condition on a field of the current structure, by field name. */
export interface FieldCondition {
  field: string;
  /** Follow when (field & mask) == value. */
  equals?: { mask: bigint; value: bigint };
  /** Follow when (field & mask) != value. */
  differs?: { mask: bigint; value: bigint };
  /** Follow when the field is below 32 and its bit in `mask` is set. */
  inSet?: bigint;
  /** Follow when the field minus the field `field` is `equals` (two 8-byte fields). */
  minus?: { field: string; equals: bigint };
}

/** Options shared by edges: entries followed at most, and a condition. */
export interface EdgeOptions {
  /** Most entries followed (lists, chains, arrays). @default 1_000_000 */
  max?: number;
  when?: FieldCondition;
}

const DEFAULT_MAX = 1_000_000;

function fieldOf(layout: StructLayout<unknown>, name: string): ResolvedField {
  const field = layout.fields.find((f) => f.name === name);
  if (!field) throw new TypeError(`Layout of "${layout.struct}" declares no field "${name}"`);
  return field;
}

function sizeOf(field: ResolvedField): FieldSize {
  if (![1, 2, 4, 8].includes(field.size)) {
    throw new TypeError(
      `Field "${field.member}" of ${field.size} bytes cannot be a count or condition`,
    );
  }
  return field.size as FieldSize;
}

/**
 * Merges ranges at most {@linkcode MERGE_GAP} apart, and those at most {@linkcode WIDE_GAP}
 * apart whose gap lies inside [0, `inside`); then the closest until at most `max` remain.
 */
export function mergeRanges(
  ranges: { off: number; len: number }[],
  max: number = PLAN_LIMITS.ranges,
  inside = 0,
): { off: number; len: number }[] {
  const sorted = [...ranges].sort((a, b) => a.off - b.off);
  const out: { off: number; end: number }[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    const gap = last ? r.off - last.end : Infinity;
    if (last && (gap <= MERGE_GAP || (gap <= WIDE_GAP && r.off <= inside))) {
      last.end = Math.max(last.end, r.off + r.len);
    } else out.push({ off: r.off, end: r.off + r.len });
  }
  while (out.length > max) {
    let best = 0;
    for (let i = 1; i < out.length - 1; i++) {
      if (out[i + 1].off - out[i].end < out[best + 1].off - out[best].end) best = i;
    }
    out[best].end = out[best + 1].end;
    out.splice(best + 1, 1);
  }
  return out.map((r) => ({ off: r.off, len: r.end - r.off }));
}

/** Builds one plan. */
export class PlanBuilder {
  #nodes: PlanNode[] = [];
  #roots: { addr: bigint; node: number }[] = [];
  /**
   * @param mode what is copied of each structure
   * @param space how the guest numbers the roots' addresses @default 4-level
   */
  constructor(readonly mode: CopyMode, readonly space = AddressSpace.FOUR_LEVEL) {}

  /** How far into a structure of `layout` gaps may be copied (see {@linkcode mergeRanges}). */
  #inside(layout: StructLayout<unknown>): number {
    return this.mode === "whole" ? layout.size : 0;
  }

  /**
   * Adds a node for structures of `layout`. `extra` ranges (relative to the structure) are copied
   * in both modes, e.g. bytes a view reads beyond its declared fields.
   */
  node<L extends StructLayout<unknown>>(
    layout: L,
    options: {
      dedupe?: boolean;
      extra?: { off: number; len: number }[];
      /**
       * Copy only the declared fields, in both modes: for a structure visited only for a link
       * or a type test (an inode read for its i_mode), whose other bytes no view reads.
       */
      fieldsOnly?: boolean;
      /**
       * Copy the declared fields as one range, from the first to the last, in both modes: for a
       * structure that is one allocation, whose fields lie far apart (more than a record costs
       * in bytes) and are read on every visit.
       */
      span?: boolean;
      /**
       * A node that leads wherever this one does from an object both visit (a task copied as a
       * process covers the same task read as a thread): an object already visited as that node
       * is not visited as this one. This node's ranges are added to that node's, so that it
       * copies every byte this one would.
       */
      coveredBy?: NodeRef;
      /**
       * Visit only the structures whose own field passes this test: the edges to this node
       * reach candidates of several kinds (the entries of one list), this node keeps its kind.
       */
      when?: FieldCondition;
    } = {},
  ): NodeRef<L> {
    if (this.#nodes.length >= PLAN_LIMITS.nodes) {
      throw new RangeError(
        `Cannot add node "${layout.struct}": a plan has at most ${PLAN_LIMITS.nodes}`,
      );
    }
    const fields = options.span
      ? [{ off: layout.start, len: layout.end - layout.start }]
      : layout.fields.map((f) => ({ off: f.offset, len: f.size }));
    const ranges = this.mode === "whole" && !options.fieldsOnly
      ? [{ off: 0, len: layout.size }]
      : fields;
    const node: PlanNode = {
      dedupe: options.dedupe ?? true,
      ranges: mergeRanges(
        [...ranges, ...(options.extra ?? [])],
        PLAN_LIMITS.ranges,
        this.#inside(layout),
      ),
      edges: [],
    };
    if (options.when) node.guard = this.#condition({ index: -1, layout }, options.when);
    const by = options.coveredBy && this.#nodes[options.coveredBy.index];
    if (by) {
      if (!by.dedupe) {
        throw new TypeError(
          `Node "${options.coveredBy!.layout.struct}" cannot cover: it is not deduped`,
        );
      }
      by.ranges = mergeRanges(
        [...by.ranges, ...node.ranges],
        PLAN_LIMITS.ranges,
        this.#inside(options.coveredBy!.layout),
      );
      node.coveredBy = options.coveredBy!.index;
    }
    this.#nodes.push(node);
    return { index: this.#nodes.length - 1, layout };
  }

  /**
   * Starts the walk at the structure at `addr`.
   * @throws {RangeError} when `addr` is no address of the builder's space.
   */
  root(addr: KAddr, node: NodeRef): this {
    this.#roots.push({ addr: this.space.fromKAddr(addr), node: node.index });
    return this;
  }

  #edge(from: NodeRef, edge: PlanEdge, options: EdgeOptions): this {
    if (options.when) edge.cond = this.#condition(from, options.when);
    const node = this.#nodes[from.index];
    if (node.edges.length >= PLAN_LIMITS.edges) {
      throw new RangeError(
        `Cannot add an edge to "${from.layout.struct}": at most ${PLAN_LIMITS.edges}`,
      );
    }
    node.edges.push(edge);
    return this;
  }

  #condition(from: NodeRef, when: FieldCondition): PlanCondition {
    const field = fieldOf(from.layout, when.field);
    const base = { off: field.offset, size: sizeOf(field) };
    if (when.equals) return { kind: CondKind.EQ, ...base, ...when.equals };
    if (when.differs) return { kind: CondKind.NE, ...base, ...when.differs };
    if (when.inSet !== undefined) return { kind: CondKind.IN_SET, ...base, mask: when.inSet };
    if (when.minus) {
      const other = fieldOf(from.layout, when.minus.field);
      if (base.size !== 8 || sizeOf(other) !== 8) {
        throw new TypeError(
          `Condition "${when.field}" minus "${when.minus.field}" needs two 8-byte fields`,
        );
      }
      return {
        kind: CondKind.DIFF,
        ...base,
        mask: BigInt(other.offset),
        value: BigInt.asUintN(64, when.minus.equals),
      };
    }
    throw new TypeError(
      `Condition on "${when.field}" says none of equals, differs, inSet and minus`,
    );
  }

  /** Follows the pointer field `field` of `from` to a `to` structure at pointer - `delta`. */
  ptr(from: NodeRef, field: string, to: NodeRef, delta = 0, options: EdgeOptions = {}): this {
    const off = fieldOf(from.layout, field).offset;
    return this.#edge(from, { kind: EdgeKind.PTR, target: to.index, off, delta, max: 1 }, options);
  }

  /**
   * Follows the pointer at byte `off` of `from` (one no field of its layout names: an element of
   * a trailing array) to a `to` structure at pointer - `delta`.
   */
  ptrAt(from: NodeRef, off: number, to: NodeRef, delta = 0, options: EdgeOptions = {}): this {
    if (!Number.isSafeInteger(off) || off < 0) throw new RangeError(`Bad pointer offset ${off}`);
    return this.#edge(from, { kind: EdgeKind.PTR, target: to.index, off, delta, max: 1 }, options);
  }

  /** Walks the list whose head is at `headOffset` in `from`; entries are `to` at entry - `delta`. */
  list(
    from: NodeRef,
    headOffset: number,
    to: NodeRef,
    delta: number,
    options: EdgeOptions = {},
  ): this {
    return this.#edge(from, {
      kind: EdgeKind.LIST,
      target: to.index,
      off: headOffset,
      delta,
      max: options.max ?? DEFAULT_MAX,
    }, options);
  }

  /** Walks the hlist (or hlist_nulls) whose first pointer is the field `field` of `from`. */
  chain(
    from: NodeRef,
    field: string,
    to: NodeRef,
    delta: number,
    options: EdgeOptions & { nulls?: boolean } = {},
  ): this {
    return this.#edge(from, {
      kind: options.nulls ? EdgeKind.HNULLS : EdgeKind.HLIST,
      target: to.index,
      off: fieldOf(from.layout, field).offset,
      delta,
      max: options.max ?? DEFAULT_MAX,
    }, options);
  }

  /**
   * Walks the array the pointer field `field` of `from` points to, with the element count in the
   * field `count` (a mask when `countIsMask`): each element a pointer to `to`, or the head of a
   * chain of `to`s (`elem: "hlist" | "hnulls"`).
   */
  array(
    from: NodeRef,
    field: string,
    count: string,
    to: NodeRef,
    options: EdgeOptions & {
      stride: number;
      /** Where in each element its pointer or chain head is. @default 0 */
      elemOffset?: number;
      delta?: number;
      elem?: "ptr" | "hlist" | "hnulls";
      countIsMask?: boolean;
      /** Pointer elements: copy only the non-NULL ones, each on its own. */
      sparse?: boolean;
    },
  ): this {
    const countField = fieldOf(from.layout, count);
    return this.#edge(from, {
      kind: EdgeKind.ARRAY,
      target: to.index,
      off: fieldOf(from.layout, field).offset,
      delta: options.delta ?? 0,
      elem: {
        ptr: ElemKind.PTR,
        hlist: ElemKind.HLIST,
        hnulls: ElemKind.HNULLS,
      }[options.elem ?? "ptr"],
      countIsMask: options.countIsMask ?? false,
      sparse: options.sparse ?? false,
      aux: countField.offset,
      countSize: sizeOf(countField),
      stride: options.stride,
      elemOffset: options.elemOffset ?? 0,
      max: options.max ?? DEFAULT_MAX,
    }, options);
  }

  /**
   * Follows the `count` pointer slots that start at the field `field` of `from` (held inline, as
   * an xarray node's `slots`): a slot's value v is a `to` at v - `delta` when v is not NULL and
   * (v & tagMask) == tagValue.
   */
  slots(
    from: NodeRef,
    field: string,
    count: number,
    to: NodeRef,
    options: EdgeOptions & { delta?: number; tagMask: number; tagValue: number },
  ): this {
    return this.#edge(from, {
      kind: EdgeKind.SLOTS,
      target: to.index,
      off: fieldOf(from.layout, field).offset,
      delta: options.delta ?? 0,
      tagMask: options.tagMask,
      tagValue: options.tagValue,
      max: count,
    }, options);
  }

  /**
   * Copies the bytes the pointer field `field` points to, as many as the field `length` says
   * (bits, rounded up to bytes, with `bits`: a bitmap of that many bits).
   */
  bytes(
    from: NodeRef,
    field: string,
    length: string,
    max: number,
    options: { bits?: boolean } = {},
  ): this {
    const lengthField = fieldOf(from.layout, length);
    return this.#edge(from, {
      kind: EdgeKind.BYTES,
      target: 0,
      off: fieldOf(from.layout, field).offset,
      delta: 0,
      aux: lengthField.offset,
      countSize: sizeOf(lengthField),
      max,
      bits: options.bits ?? false,
    }, {});
  }

  /** The finished plan, at most `maxDepth` hops from a root. */
  build(maxDepth: number = PLAN_LIMITS.depth): Plan {
    return { roots: this.#roots, nodes: this.#nodes, maxDepth };
  }
}
