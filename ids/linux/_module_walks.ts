/**
 * The walks of the two views beside the module list: the module kset's kobjects (those with a
 * module: a built-in with parameters only has none) and the `mod_tree` rb tree, depth first.
 * Each is bounded, detects cycles and reports a cut walk as truncated, with the reason.
 *
 * @module
 */

import { follow, type GuestMemory, type KAddr, type Pointer } from "../memory/mod.ts";
import { type Fields, readStruct } from "../kernel/mod.ts";
import { hex64 } from "./address_owner.ts";
import type { ModuleViewTypes } from "./_module_view_types.ts";

/** The modules one walk reached, and how it ended. */
export interface Walk {
  modules: KAddr[];
  truncated: boolean;
  reason?: string;
}

/**
 * The modules of the kset whose address is at `symbol` (`module_kset`), in its order.
 * @throws {Error} when the symbol, the kset or its address cannot be read.
 */
export async function walkKset(
  mem: GuestMemory,
  types: NonNullable<Extract<ModuleViewTypes["kset"], { ok: unknown }>["ok"]>,
  symbol: KAddr,
  max: number,
): Promise<Walk> {
  const modules: KAddr[] = [];
  const slot = await mem.read(symbol, 8);
  const at = follow(
    mem.space.pointerAt(new DataView(slot.buffer, slot.byteOffset, 8), 0),
    "module_kset",
  );
  const head = at + types.listOffset;
  let next = (await readStruct(mem, at, types.kset)).next;
  let from = `the module kset ${mem.space.hex(at)}`;
  const seen = new Set<KAddr>();
  for (let visited = 0;; visited++) {
    let entry: KAddr;
    try {
      entry = follow(next, `kobj.entry.next of ${from}`);
    } catch (error) {
      return { modules, truncated: true, reason: (error as Error).message };
    }
    if (entry === head) return { modules, truncated: false };
    const kobject = entry - types.entryOffset;
    if (seen.has(kobject)) {
      return {
        modules,
        truncated: true,
        reason: `the module kset loops back to ${mem.space.hex(kobject)} without reaching its head`,
      };
    }
    if (visited >= max) return { modules, truncated: true, reason: `more than ${max} kobjects` };
    seen.add(kobject);
    let fields: Fields<typeof types.kobject>;
    try {
      fields = await readStruct(mem, kobject, types.kobject);
    } catch (error) {
      return {
        modules,
        truncated: true,
        reason: `module_kobject ${mem.space.hex(kobject)}, linked from ${from}: ${
          (error as Error).message
        }`,
      };
    }
    if (typeof fields.mod === "number") modules.push(fields.mod);
    next = fields.next;
    from = `module_kobject ${mem.space.hex(kobject)}`;
  }
}

/**
 * The modules of the tree of the `mod_tree_root` at `symbol`, each once.
 * @throws {GuestReadError} when the tree's root cannot be read.
 */
export async function walkTree(
  mem: GuestMemory,
  types: NonNullable<Extract<ModuleViewTypes["tree"], { ok: unknown }>["ok"]>,
  symbol: KAddr,
  max: number,
): Promise<Walk> {
  const modules = new Set<KAddr>();
  const slot = await mem.read(symbol + types.rootOffset, 8);
  const first = new DataView(slot.buffer, slot.byteOffset, 8).getBigUint64(0, true);
  if (first === 0n) return { modules: [], truncated: false };
  const start = mem.space.toKAddr(first);
  if (start === undefined) {
    return {
      modules: [],
      truncated: true,
      reason: `the mod_tree root ${hex64(first)} is not a kernel address`,
    };
  }
  const stack: [KAddr, string][] = [[start, "the mod_tree root"]];
  const seen = new Set<KAddr>();
  while (stack.length) {
    const [rb, from] = stack.pop()!;
    const node = rb - types.nodeOffset;
    if (seen.has(node)) {
      return {
        modules: [...modules],
        truncated: true,
        reason: `mod_tree node ${mem.space.hex(node)} is reached twice (from ${from})`,
      };
    }
    if (seen.size >= max) {
      return { modules: [...modules], truncated: true, reason: `more than ${max} mod_tree nodes` };
    }
    seen.add(node);
    let fields;
    try {
      fields = await readStruct(mem, node, types.node);
    } catch (error) {
      return {
        modules: [...modules],
        truncated: true,
        reason: `mod_tree node ${mem.space.hex(node)}, linked from ${from}: ${
          (error as Error).message
        }`,
      };
    }
    for (const side of ["left", "right"] as const) {
      const p = fields[side] as Pointer;
      if (p === null) continue;
      if (typeof p !== "number") {
        return {
          modules: [...modules],
          truncated: true,
          reason: `rb_${side} of mod_tree node ${
            mem.space.hex(node)
          }: ${p.value} is not a kernel address`,
        };
      }
      stack.push([p, `mod_tree node ${mem.space.hex(node)}`]);
    }
    if (typeof fields.mod === "number") modules.add(fields.mod);
  }
  return { modules: [...modules], truncated: false };
}
