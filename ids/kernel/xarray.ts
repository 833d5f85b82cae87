/**
 * The xarray (the radix tree behind every `struct idr`: pid numbers, BPF program ids): its plan
 * and its reader.
 *
 * An xarray's `xa_head` is NULL, a single entry (index 0), or an internal node pointer (tagged
 * 2 in its low bits, above 4096). A node (`struct xa_node`) holds 64 slots, each NULL, an entry
 * (an aligned pointer, tag 0), a child node (tag 2), or a small internal value (sibling, retry,
 * zero entries: tag 2, below 4096). `shift` is 6 times the levels below the node; a slot's index
 * is its parent's base plus its position shifted by `shift`.
 *
 * Guest memory is hostile: the reader bounds the nodes and entries it visits, checks that each
 * child's shift is its parent's minus 6, detects cycles, and reports a cut walk as truncated.
 *
 * @module
 */

import type { Btf } from "../btf/mod.ts";
import type { GuestMemory, KAddr } from "../memory/mod.ts";
import { peekStruct, raw, readStruct, resolveLayout, uint } from "./layout.ts";
import type { NodeRef, PlanBuilder } from "./plan.ts";

const CHUNK_SHIFT = 6;
const NODE_TAG = 2;
/** Internal values at or below this are not node pointers (xa_is_node). */
const INTERNAL_MAX = 4096;

/** Resolves `struct xa_node`. @throws {LayoutError} when the kernel lacks it. */
export function resolveXarrayTypes(btf: Btf) {
  const node = resolveLayout(btf, "xa_node", {
    shift: uint("shift"),
    slots: raw("slots"),
  });
  return { node, slotCount: node.fields.find((f) => f.name === "slots")!.size / 8 };
}

/** The resolved xarray structures of one guest kernel. */
export type XarrayTypes = ReturnType<typeof resolveXarrayTypes>;

/**
 * Adds to `b` the walk of the xarray whose `xa_head` is the field `headField` of `from`: every
 * node, and every entry as a `to` at entry - `delta`.
 */
export function planXarray(
  b: PlanBuilder,
  types: XarrayTypes,
  from: NodeRef,
  headField: string,
  to: NodeRef,
  delta = 0,
): void {
  const node = b.node(types.node);
  const tags = (tagValue: number) => ({ tagMask: 3, tagValue });
  b.slots(from, headField, 1, node, { delta: NODE_TAG, ...tags(NODE_TAG) });
  b.slots(from, headField, 1, to, { delta, ...tags(0) });
  b.slots(node, "slots", types.slotCount, node, { delta: NODE_TAG, ...tags(NODE_TAG) });
  b.slots(node, "slots", types.slotCount, to, { delta, ...tags(0) });
}

/** One entry of an xarray. */
export interface XarrayEntry {
  index: number;
  /** The entry as an address (untagged pointer). */
  value: KAddr;
}

/** What {@linkcode readXarray} found. */
export interface XarrayContents {
  entries: XarrayEntry[];
  nodes: number;
  truncated: boolean;
  reason?: string;
}

/** Bounds of {@linkcode readXarray}. */
export interface XarrayOptions {
  /** @default 4_194_304 */
  maxEntries?: number;
  /** @default 262_144 */
  maxNodes?: number;
}

function u64(bytes: Uint8Array, at: number): bigint {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(at, true);
}

/** Reads the entries of the xarray whose `xa_head` is at `headAt`, in index order. */
export async function readXarray(
  mem: GuestMemory,
  types: XarrayTypes,
  headAt: KAddr,
  options: XarrayOptions = {},
): Promise<XarrayContents> {
  const maxEntries = options.maxEntries ?? 1 << 22;
  const maxNodes = options.maxNodes ?? 1 << 18;
  const space = mem.space;
  const out: XarrayContents = { entries: [], nodes: 0, truncated: false };
  const seen = new Set<KAddr>();
  const stop = (reason: string) => {
    out.truncated = true;
    out.reason ??= reason;
  };
  /** Adds an entry; `at` undefined when `value` is not a kernel address (at `where`). */
  const entry = (index: number, at: KAddr | undefined, value: bigint, where: string): boolean => {
    if (at === undefined) {
      stop(`${where} holds ${value.toString(16)}, not a kernel address`);
      return true;
    }
    if (out.entries.length >= maxEntries) {
      stop(`more than ${maxEntries} entries`);
      return false;
    }
    out.entries.push({ index, value: at });
    return true;
  };
  // Depth first, children in slot order, so entries come in index order.
  const visit = async (node: KAddr, base: number, shift: number | undefined): Promise<boolean> => {
    if (seen.has(node)) {
      stop(`node ${space.hex(node)} is reached twice`);
      return true;
    }
    if (out.nodes >= maxNodes) {
      stop(`more than ${maxNodes} nodes`);
      return false;
    }
    seen.add(node);
    out.nodes++;
    const n = peekStruct(mem, node, types.node) ?? await readStruct(mem, node, types.node);
    if (n.shift % CHUNK_SHIFT !== 0 || n.shift > 60 || (shift !== undefined && n.shift !== shift)) {
      stop(`node ${space.hex(node)} has shift ${n.shift}, expected ${shift ?? "a multiple of 6"}`);
      return true;
    }
    const slots = new DataView(n.slots.buffer, n.slots.byteOffset, n.slots.byteLength);
    // Each slot as two 32-bit halves: tag bits and kernel addresses without a BigInt.
    for (let i = 0; i < types.slotCount; i++) {
      const low = slots.getUint32(i * 8, true);
      const high = slots.getUint32(i * 8 + 4, true);
      if (low === 0 && high === 0) continue;
      const index = base + i * 2 ** n.shift;
      const tag = low & 3;
      if (tag === NODE_TAG) {
        if (high === 0 && low <= INTERNAL_MAX) continue;
        if (n.shift === 0) {
          stop(`node ${space.hex(node)} at the last level points to another node`);
          continue;
        }
        const child = space.kaddrOf(high, low - NODE_TAG);
        if (child === undefined) {
          stop(`node ${space.hex(node)} slot ${i} is not a kernel address`);
          continue;
        }
        if (!await visit(child, index, n.shift - CHUNK_SHIFT)) return false;
      } else if (tag === 0) {
        const at = space.kaddrOf(high, low);
        // What names a bad entry is made only for one.
        const bad = at === undefined;
        const value = bad ? slots.getBigUint64(i * 8, true) : 0n;
        if (!entry(index, at, value, bad ? `node ${space.hex(node)} slot ${i}` : "")) return false;
      }
    }
    return true;
  };
  const head = u64(await mem.read(headAt, 8), 0);
  if (head === 0n) return out;
  if ((head & 3n) === BigInt(NODE_TAG) && head > BigInt(INTERNAL_MAX)) {
    const node = space.toKAddr(head - BigInt(NODE_TAG));
    if (node === undefined) stop(`xa_head ${head.toString(16)} is not a kernel address`);
    else await visit(node, 0, undefined);
  } else if ((head & 3n) === 0n) {
    entry(0, space.toKAddr(head), head, "xa_head");
  }
  return out;
}

/**
 * Looks up one index, descending from the head (one node read per level): for re-checking a
 * single entry against the live guest. Undefined when the index holds nothing.
 */
export async function lookupXarray(
  mem: GuestMemory,
  types: XarrayTypes,
  headAt: KAddr,
  index: number,
): Promise<KAddr | undefined> {
  const space = mem.space;
  let v = u64(await mem.read(headAt, 8), 0);
  for (let level = 0; level < 12; level++) {
    if (v === 0n) return undefined;
    if ((v & 3n) === 0n) return index === 0 ? space.toKAddr(v) : undefined;
    if ((v & 3n) !== BigInt(NODE_TAG) || v <= BigInt(INTERNAL_MAX)) return undefined;
    const node = space.toKAddr(v - BigInt(NODE_TAG));
    if (node === undefined) return undefined;
    const n = await readStruct(mem, node, types.node);
    const slot = Math.floor(index / 2 ** n.shift);
    if (slot >= types.slotCount) return undefined;
    v = u64(n.slots, slot * 8);
    index -= slot * 2 ** n.shift;
  }
  return undefined;
}
