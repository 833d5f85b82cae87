/**
 * Plan nodes for objects at known offsets rather than at BTF member paths: a layout of fields at
 * fixed offsets ({@linkcode fixedLayout}: an rb_node inside an array member, an operations
 * structure copied whole), and one root for the regions of the kernel image at symbol addresses
 * ({@linkcode planKernelImage}), where the pointer tables, the module views and ftrace start.
 *
 * @module
 */

import type { AddressSpace, KAddr } from "../memory/mod.ts";
import type { NodeRef, PlanBuilder, ResolvedField, StructLayout } from "../kernel/mod.ts";

/** A field of a {@linkcode fixedLayout}: where it is, how big, how it decodes. */
export interface FixedField {
  name: string;
  offset: number;
  size: number;
  kind: "ptr" | "raw";
}

/**
 * A layout whose fields are at known offsets rather than BTF member paths: an rb_node inside
 * an array member, or regions of the kernel image at symbol addresses. `ptr` fields decode to
 * pointers, `raw` to bytes.
 */
export function fixedLayout(
  struct: string,
  size: number,
  fields: readonly FixedField[],
): StructLayout<Record<string, unknown>> {
  const resolved: ResolvedField[] = fields.map((f) => ({ ...f, member: f.name }));
  const start = Math.min(...fields.map((f) => f.offset));
  const end = Math.max(...fields.map((f) => f.offset + f.size));
  const ranges = fields.map((f) => ({ off: f.offset - start, len: f.size }));
  return {
    struct,
    size,
    fields: resolved,
    start,
    end,
    ranges,
    // Regions far apart in the image, copied each on its own: gathered as they are.
    gather: ranges,
    decode(view: DataView, from: number, space: AddressSpace) {
      const out: Record<string, unknown> = {};
      for (const f of fields) {
        const at = from + f.offset - start;
        out[f.name] = f.kind === "ptr"
          ? space.pointerAt(view, at)
          : new Uint8Array(view.buffer, view.byteOffset + at, f.size).slice();
      }
      return out;
    },
  };
}

/** A region of the kernel image a plan copies: the object at a symbol's address. */
export interface ImageRegion {
  name: string;
  at: KAddr;
  len: number;
}

/** Farthest a region may be from the lowest one (a plan's offsets are 32-bit). */
const MAX_SPAN = 2 ** 31;

/**
 * Adds ONE root for objects of the kernel image at known addresses: a node at the lowest
 * address whose ranges are the regions, each a field named after it (so pointer edges can start
 * there). Regions too far from the lowest are left out (read on demand). Returns the node and
 * each region's offset from it, or undefined without regions.
 */
export function planKernelImage(
  b: PlanBuilder,
  regions: readonly ImageRegion[],
): { node: NodeRef; offsets: Map<string, number> } | undefined {
  if (regions.length === 0) return undefined;
  const base = Math.min(...regions.map((r) => r.at));
  const near = regions.filter((r) => r.at - base < MAX_SPAN && r.len > 0);
  const fields = near.map((r) => ({
    name: r.name,
    offset: r.at - base,
    size: r.len,
    kind: "raw" as const,
  }));
  const lowest = fields.find((f) => f.offset === 0)!;
  const layout = fixedLayout("kernel image", lowest.size, fields);
  const node = b.node(layout, { extra: fields.map((f) => ({ off: f.offset, len: f.size })) });
  b.root(base, node);
  return { node, offsets: new Map(fields.map((f) => [f.name, f.offset])) };
}
