/**
 * What the three module views are made of in one kernel, resolved once from its BTF: the module
 * list's structures and a module's own links (for the re-check), the module kset's kobjects, and
 * the nodes of the `mod_tree` rb tree (inside an array member, so at fixed offsets); and the
 * symbols where the views start. A view the kernel lacks is a reason, not an error.
 *
 * @module
 */

import type { Btf } from "../btf/mod.ts";
import type { KAddr } from "../memory/mod.ts";
import { offsetOf, optional, ptr, resolveLayout, uint } from "../kernel/mod.ts";
import { resolveModuleTypes } from "./module_types.ts";
import { fixedLayout } from "./_kernel_image.ts";
import { resolveText } from "./_module_text.ts";

/**
 * Resolves the structures of the three views; a view the kernel lacks is a reason.
 * @throws {LayoutError} when the module list itself cannot be read.
 */
export function resolveModuleViewTypes(btf: Btf) {
  const modules = resolveModuleTypes(btf);
  const listHead = resolveLayout(btf, "list_head", { next: ptr("next"), prev: ptr("prev") });
  const links = resolveLayout(btf, "module", {
    state: uint("state"),
    next: ptr("list.next"),
    prev: ptr("list.prev"),
    kobjNext: ptr("mkobj.kobj.entry.next"),
    kobjPrev: ptr("mkobj.kobj.entry.prev"),
  });
  const kset = optional(() => ({
    kset: resolveLayout(btf, "kset", { next: ptr("list.next") }),
    listOffset: offsetOf(btf, "kset", "list"),
    kobject: resolveLayout(btf, "module_kobject", {
      next: ptr("kobj.entry.next"),
      mod: ptr("mod"),
    }),
    /** A kobject's `entry` minus this is its module_kobject. */
    entryOffset: offsetOf(btf, "module_kobject", "kobj.entry"),
    /** A module's `mkobj.kobj.entry`, from the module. */
    moduleEntry: offsetOf(btf, "module", "mkobj.kobj.entry"),
  }));
  const tree = optional(() => {
    const rootOffset = offsetOf(btf, "mod_tree_root", "root.tree") +
      offsetOf(btf, "rb_root", "rb_node");
    // tree[0] links node[0] of each latch_tree_node: the array's first rb_node.
    const node = offsetOf(btf, "mod_tree_node", "node.node");
    const mod = offsetOf(btf, "mod_tree_node", "mod");
    const right = node + offsetOf(btf, "rb_node", "rb_right");
    const left = node + offsetOf(btf, "rb_node", "rb_left");
    const size = btf.sizeof(btf.struct("mod_tree_node").id);
    return {
      rootOffset,
      /** An rb_node of tree[0] minus this is its mod_tree_node. */
      nodeOffset: node,
      node: fixedLayout("mod_tree_node", size, [
        { name: "mod", offset: mod, size: 8, kind: "ptr" },
        { name: "right", offset: right, size: 8, kind: "ptr" },
        { name: "left", offset: left, size: 8, kind: "ptr" },
      ]),
    };
  });
  return { modules, listHead, links, text: resolveText(btf, modules), kset, tree };
}

/** The resolved structures of the module views of one kernel. */
export type ModuleViewTypes = ReturnType<typeof resolveModuleViewTypes>;

/** The kernel symbols of the views. */
export const MODULE_SYMBOLS = ["modules", "module_kset", "mod_tree"] as const;

/** Where the views start in one guest: the three symbols (undefined: unknown). */
export interface ModuleAnchors {
  modules: KAddr;
  moduleKset?: KAddr;
  modTree?: KAddr;
}
