/**
 * What the module views' tests share: the Debian 6.1 guest kernel's BTF (`core_layout`, `refcnt`,
 * and `mod_tree` with CONFIG_MODULES_TREE_LOOKUP), and a synthetic guest whose modules sit in the
 * module list, the kset and mod_tree as each test says.
 *
 * @module
 */

import { resolveKernelTypes } from "./kernel_types.ts";
import { offsetOf } from "../kernel/mod.ts";
import type { ModuleAnchors, ModuleViewTypes } from "./_module_view_types.ts";
import { SyntheticKernel } from "./testing/mod.ts";
import { guestBtf } from "./_guest_btf.ts";

const guest = await guestBtf();
if (!("btf" in guest)) console.warn(`module views tests: 6.1 tests skipped: ${guest.reason}`);
/** The guest kernel's BTF is not at hand: the tests that need it are skipped, with the reason. */
export const ignore = !("btf" in guest);
/** The 6.1 guest kernel's BTF, unless {@linkcode ignore}. */
export const btf61 = "btf" in guest ? guest.btf : undefined;

/** A module of the image: its name, its state, and the views it is in (each unless false). */
export interface Spec {
  name: string;
  /** 0 live, 1 coming, 2 going. @default 0 */
  state?: number;
  list?: boolean;
  kset?: boolean;
  tree?: boolean;
}

const MODULE_BASE = 0x7fff_c000_0000; // ffffffffc0000000: the module area

/**
 * A guest with `specs` modules: each on the module list, in the kset (its own mkobj) and in
 * mod_tree (its core_layout.mtn) unless its spec says not; plus `builtins` param-only kobjects
 * (mod NULL) in the kset. A module off the list has its list_head pointing to itself, as
 * list_del_init leaves it; off the kset, its kobject entry likewise.
 */
export function image(types: ModuleViewTypes, specs: Spec[], builtins = 2) {
  const btf = btf61!;
  const kernel = new SyntheticKernel(resolveKernelTypes(btf), []);
  const t = types.modules;
  const kset = ok(types.kset);
  const tree = ok(types.tree);
  const mkobj = offsetOf(btf, "module", "mkobj");
  const mtn = offsetOf(btf, "module", "core_layout.mtn");
  const anchors: ModuleAnchors = {
    modules: 0x7f00_2000_0000,
    moduleKset: 0x7f00_2000_1000,
    modTree: 0x7f00_2000_2000,
  };
  const ksetAt = 0x0888_2000_0000;
  const modules = specs.map((spec, i) => {
    const at = kernel.place(t.module, {
      state: spec.state ?? 0,
      name: spec.name,
      taints: { raw: 0n },
    });
    const base = BigInt(MODULE_BASE + i * 0x10_0000) + 0xffff_8000_0000_0000n;
    if (types.text.kind !== "layout") throw new TypeError("a 6.1 kernel has core_layout");
    kernel.place(types.text.layout, {
      coreBase: base,
      coreSize: 0x4000,
      coreText: 0x2000,
      initBase: null,
      initSize: 0,
      initText: 0,
    }, { at });
    if (t.refcnt) kernel.place(t.refcnt, { refcnt: 1 }, { at });
    // No users: source_list is empty (points to itself), and the module has an exit function.
    const users = t.users!;
    kernel.place(users.module, { first: at + users.listOffset, init: null, exit: null }, { at });
    kernel.place(types.links, {}, { at });
    kernel.place(kset.kobject, { mod: at }, { at: at + mkobj });
    return at;
  });
  // The module list.
  const listed = modules.filter((_, i) => specs[i].list !== false);
  kernel.place(types.listHead, {}, { at: anchors.modules });
  const links = [anchors.modules, ...listed.map((m) => m + t.listOffset)];
  links.forEach((at, i) => {
    const next = links[(i + 1) % links.length];
    const prev = links[(i - 1 + links.length) % links.length];
    if (i === 0) kernel.mutate(at, { next, prev });
    else kernel.mutate(at - t.listOffset, { next, prev });
  });
  modules.forEach((m, i) => {
    if (specs[i].list === false) {
      kernel.mutate(m, { next: m + t.listOffset, prev: m + t.listOffset });
    }
  });
  // The kset: the modules' own kobjects and param-only ones.
  kernel.placeBytes(pointerBytes(ksetAt), anchors.moduleKset);
  kernel.place(kset.kset, {}, { at: ksetAt });
  const kobjects = [
    ...Array.from({ length: builtins }, () => kernel.place(kset.kobject, { mod: null })),
    ...modules.filter((_, i) => specs[i].kset !== false).map((m) => m + mkobj),
  ];
  const entries = [ksetAt + kset.listOffset, ...kobjects.map((k) => k + kset.entryOffset)];
  entries.forEach((entry, i) => {
    const next = entries[(i + 1) % entries.length];
    if (i === 0) kernel.mutate(ksetAt, { next });
    else kernel.mutate(entry - kset.entryOffset, { next });
  });
  entries.forEach((entry, i) => {
    const next = entries[(i + 1) % entries.length];
    const prev = entries[(i - 1 + entries.length) % entries.length];
    kernel.place(types.listHead, { next, prev }, { at: entry });
  });
  modules.forEach((m) => {
    const own = m + mkobj + kset.entryOffset;
    const at = entries.indexOf(own);
    const next = at < 0 ? own : entries[(at + 1) % entries.length];
    const prev = at < 0 ? own : entries[(at - 1 + entries.length) % entries.length];
    kernel.mutate(m, { kobjNext: next, kobjPrev: prev });
  });
  // mod_tree: a heap-shaped binary tree of the modules' core_layout.mtn.
  const inTree = modules.filter((_, i) => specs[i].tree !== false);
  const rb = (j: number) => (j < inTree.length ? inTree[j] + mtn + tree.nodeOffset : null);
  kernel.placeBytes(pointerBytes(rb(0)), anchors.modTree! + tree.rootOffset);
  inTree.forEach((m, i) => {
    kernel.place(tree.node, { mod: m, left: rb(2 * i + 1), right: rb(2 * i + 2) }, { at: m + mtn });
  });
  return { kernel, anchors, modules };
}

function pointerBytes(at: number | null): Uint8Array {
  const bytes = new Uint8Array(8);
  if (at !== null) {
    new DataView(bytes.buffer).setBigUint64(0, BigInt(at) + 0xffff_8000_0000_0000n, true);
  }
  return bytes;
}

export const SPECS: Spec[] = [
  { name: "virtio_net" },
  { name: "loop" },
  { name: "dummy" },
  { name: "crc32_generic" },
];

/** The part of a kernel's views it has; the test fails when it lacks it. */
export function ok<T>(part: { ok: T } | { reason: string }): T {
  if (!("ok" in part)) throw new Error(part.reason);
  return part.ok;
}
