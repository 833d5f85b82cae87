/**
 * The loaded modules as three independent kernel structures hold them, for cross-view
 * detection of a module that unlinked itself:
 *
 * - `list`: the `modules` list (what /proc/modules and lsmod show; {@linkcode listModules});
 * - `kset`: the module kset (`module_kset` -> `struct kset`.list of kobjects, entry
 *   `kobj.entry` of a `struct module_kobject`, whose `mod` is the module: /sys/module). A
 *   built-in "module" with parameters only (`kernel/`, `printk/`) has one with `mod` NULL:
 *   ignored;
 * - `mod_tree`: the module address tree (`mod_tree` -> `struct mod_tree_root`, the latch tree's
 *   `tree[0]`, an rb tree of `mod_tree_node`s whose `mod` is the module; with
 *   CONFIG_MODULES_TREE_LOOKUP). A kernel without it has that view absent, named as absent.
 *
 * The race, and how it is told from hiding: a module is added to the list (UNFORMED), then to
 * mod_tree (COMING), then to the kset; it leaves the kset first when it goes, then the list and
 * the tree. A snapshot taken while a module loads or unloads can therefore find it in one view and
 * not another, or miss it in the list because the list was read before it was linked. Every
 * module some complete view lacks is re-read from the live guest (`confirm`): its state, and
 * whether its `list` and `mkobj.kobj.entry` links are linked (each neighbour points back), and
 * for one the tree lacked, whether a new walk of the live tree finds it. Only a LIVE module whose
 * links are not linked is hidden (ids/detect/hidden_module.ts).
 *
 * Every walk is bounded, detects cycles and reports how it ended. The views' structures are
 * resolved in `_module_view_types.ts`, a module's text in `_module_text.ts`; the kset and tree
 * walks are in `_module_walks.ts`.
 *
 * @module
 */

import { isLinked } from "./_list.ts";
import type { Btf } from "../btf/mod.ts";
import type { GuestMemory, KAddr } from "../memory/mod.ts";
import {
  LayoutError,
  type Optional,
  optional,
  type PlanBuilder,
  readStruct,
} from "../kernel/mod.ts";
import type { ScanContext, Section, Source } from "../detect/mod.ts";
import { describeModule, listModules, type Module, planModuleUsers } from "./modules.ts";
import type { AddressRange } from "./address_owner.ts";
import { type ImageRegion, planKernelImage } from "./_kernel_image.ts";
import {
  MODULE_SYMBOLS,
  type ModuleAnchors,
  type ModuleViewTypes,
  resolveModuleViewTypes,
} from "./_module_view_types.ts";
import { textOf } from "./_module_text.ts";
import { type Walk, walkKset, walkTree } from "./_module_walks.ts";

export const MODULE_VIEWS = ["list", "kset", "mod_tree"] as const;
export type ModuleView = typeof MODULE_VIEWS[number];

/** A fresh read of a module's own structures, for a module some view lacks. */
export interface ModuleRecheck {
  state: string;
  /** Its `list` links are linked: both neighbours point back to it. */
  listLinked: boolean;
  /** Its kobject's `entry` links are linked. */
  ksetLinked: boolean;
  /**
   * Only when the snapshot's mod_tree lacked it: whether a new walk of the live tree finds it (a
   * rebalance for another module's load can hide a node from a walk for a moment).
   */
  inTree?: boolean;
  /** Set when the re-read failed. */
  error?: string;
}

/** A module one of the views holds. */
export interface ViewedModule extends Module {
  /** Its text: core text, and init text while it has some. */
  text: AddressRange[];
  /** All its memory (text and data), to tell which module holds an address. */
  memory: AddressRange[];
  seenIn: ModuleView[];
  /** Only for a module a complete view lacks. */
  recheck?: ModuleRecheck;
}

/** How one view's walk went. */
export interface ModuleViewWalk {
  /** The kernel has this view; when false, `reason` says why not. */
  present: boolean;
  count: number;
  truncated: boolean;
  reason?: string;
}

/** The `modules` section. */
export interface ModuleViews {
  /** The list's modules in its order, then those only other views hold. */
  modules: ViewedModule[];
  views: Record<ModuleView, ModuleViewWalk>;
  /** Modules a complete view lacks that were not re-read (past the re-check limit). */
  unconfirmed: number;
}

/** Options of {@linkcode readModuleViews} and {@linkcode planModuleViews}. */
export interface ModuleViewOptions {
  /** Most modules (list), kobjects (kset) or tree nodes (mod_tree) visited. @default 65536 */
  max?: number;
  /** Most modules re-read from the live guest. @default 64 */
  maxRechecks?: number;
}

const DEFAULT_MAX = 65536;

/**
 * Adds to `b` what {@linkcode readModuleViews} reads: one root for the three symbols, the module
 * list, the kset's kobjects and the tree, all reaching one node for the modules.
 */
export function planModuleViews(
  b: PlanBuilder,
  types: ModuleViewTypes,
  anchors: ModuleAnchors,
  options: ModuleViewOptions = {},
): void {
  const max = options.max ?? DEFAULT_MAX;
  const t = types.modules;
  const regions: ImageRegion[] = [{ name: "modules", at: anchors.modules, len: 16 }];
  const kset = "ok" in types.kset ? types.kset.ok : undefined;
  const tree = "ok" in types.tree ? types.tree.ok : undefined;
  if (kset && anchors.moduleKset !== undefined) {
    regions.push({ name: "module_kset", at: anchors.moduleKset, len: 8 });
  }
  if (tree && anchors.modTree !== undefined) {
    regions.push({ name: "mod_tree", at: anchors.modTree + tree.rootOffset, len: 8 });
  }
  const image = planKernelImage(b, regions)!;
  const text = types.text.kind === "layout" ? types.text.layout : types.text.memory.layout;
  const extra = [text, t.refcnt, t.users?.module, types.links].flatMap((layout) =>
    layout ? layout.fields.map((f) => ({ off: f.offset, len: f.size })) : []
  );
  const module = b.node(t.module, { extra });
  planModuleUsers(b, t, module, max);
  const listAt = image.offsets.get("modules");
  if (listAt !== undefined) b.list(image.node, listAt, module, t.listOffset, { max });
  if (kset && image.offsets.has("module_kset")) {
    const ksetNode = b.node(kset.kset);
    const kobject = b.node(kset.kobject);
    b.ptr(image.node, "module_kset", ksetNode);
    b.list(ksetNode, kset.listOffset, kobject, kset.entryOffset, { max });
    b.ptr(kobject, "mod", module);
  }
  if (tree && image.offsets.has("mod_tree")) {
    const node = b.node(tree.node);
    b.ptr(image.node, "mod_tree", node, tree.nodeOffset);
    b.ptr(node, "right", node, tree.nodeOffset);
    b.ptr(node, "left", node, tree.nodeOffset);
    b.ptr(node, "mod", module);
  }
}

/** What is known of a module whose fields cannot be read. */
const UNREAD: Module = {
  name: "",
  module: "",
  base: "",
  size: -1,
  state: "unknown",
  refcount: null,
  taints: "",
  taintFlags: "",
};

async function viewed(
  mem: GuestMemory,
  types: ModuleViewTypes,
  at: KAddr,
  listed: Module | undefined,
): Promise<ViewedModule> {
  let module = listed;
  const errors: string[] = [];
  if (!module) {
    try {
      module = await describeModule(
        mem,
        types.modules,
        at,
        await readStruct(mem, at, types.modules.module),
      );
    } catch (error) {
      errors.push((error as Error).message);
    }
  }
  const { error: _, ...fields } = module ?? UNREAD;
  const v: ViewedModule = {
    ...fields,
    module: mem.space.hex(at),
    text: [],
    memory: [],
    seenIn: [],
  };
  if (module?.error) errors.push(module.error);
  try {
    Object.assign(v, await textOf(mem, types.text, at));
  } catch (error) {
    errors.push((error as Error).message);
  }
  if (errors.length) v.error = errors.join("; ");
  return v;
}

async function recheck(
  confirm: GuestMemory,
  types: ModuleViewTypes,
  at: KAddr,
): Promise<ModuleRecheck> {
  try {
    const l = await readStruct(confirm, at, types.links);
    const list = at + types.modules.listOffset;
    const entry = "ok" in types.kset ? at + types.kset.ok.moduleEntry : undefined;
    return {
      state: types.modules.states.get(l.state) ?? "unknown",
      listLinked: await isLinked(confirm, types.listHead, list, { next: l.next, prev: l.prev }),
      ksetLinked: entry !== undefined &&
        await isLinked(confirm, types.listHead, entry, { next: l.kobjNext, prev: l.kobjPrev }),
    };
  } catch (error) {
    return {
      state: "unknown",
      listLinked: false,
      ksetLinked: false,
      error: (error as Error).message,
    };
  }
}

/**
 * Reads the three views and re-reads from `confirm` every module a complete view lacks.
 * @throws {GuestReadError} only when the module list head cannot be read.
 */
export async function readModuleViews(
  mem: GuestMemory,
  types: ModuleViewTypes,
  anchors: ModuleAnchors,
  confirm: GuestMemory,
  options: ModuleViewOptions = {},
): Promise<ModuleViews> {
  const max = options.max ?? DEFAULT_MAX;
  const list = await listModules(mem, types.modules, anchors.modules, { maxModules: max });
  const views = {} as Record<ModuleView, ModuleViewWalk>;
  views.list = {
    present: true,
    count: list.modules.length,
    truncated: list.truncated,
    ...(list.reason ? { reason: list.reason } : {}),
  };
  const walks = new Map<ModuleView, KAddr[]>();
  walks.set("list", list.modules.map((m) => mem.space.parseKAddr(m.module)!));
  const other = async (
    view: "kset" | "mod_tree",
    type: Optional<unknown>,
    symbol: string,
    at: KAddr | undefined,
    walk: (at: KAddr) => Promise<Walk>,
  ) => {
    if (!("ok" in type)) {
      views[view] = { present: false, count: 0, truncated: false, reason: type.reason };
      return;
    }
    if (at === undefined) {
      const reason = `kallsyms does not give the address of "${symbol}"`;
      views[view] = { present: false, count: 0, truncated: false, reason };
      return;
    }
    let w: Walk;
    try {
      w = await walk(at);
    } catch (error) {
      w = { modules: [], truncated: true, reason: (error as Error).message };
    }
    walks.set(view, w.modules);
    views[view] = {
      present: true,
      count: w.modules.length,
      truncated: w.truncated,
      ...(w.reason ? { reason: w.reason } : {}),
    };
  };
  await other(
    "kset",
    types.kset,
    "module_kset",
    anchors.moduleKset,
    (at) => walkKset(mem, (types.kset as { ok: never }).ok, at, max),
  );
  await other(
    "mod_tree",
    types.tree,
    "mod_tree",
    anchors.modTree,
    (at) => walkTree(mem, (types.tree as { ok: never }).ok, at, max),
  );

  const byAddress = new Map<KAddr, ViewedModule>();
  const listed = new Map(list.modules.map((m) => [mem.space.parseKAddr(m.module)!, m]));
  for (const view of MODULE_VIEWS) {
    for (const at of walks.get(view) ?? []) {
      let v = byAddress.get(at);
      if (!v) byAddress.set(at, v = await viewed(mem, types, at, listed.get(at)));
      if (!v.seenIn.includes(view)) v.seenIn.push(view);
    }
  }
  const complete = MODULE_VIEWS.filter((v) => views[v].present && !views[v].truncated);
  const maxRechecks = options.maxRechecks ?? 64;
  let rechecks = 0;
  let unconfirmed = 0;
  let liveTree: Walk | undefined;
  for (const [at, v] of byAddress) {
    if (complete.every((view) => v.seenIn.includes(view))) continue;
    if (rechecks++ >= maxRechecks) {
      unconfirmed++;
      continue;
    }
    v.recheck = await recheck(confirm, types, at);
    if (complete.includes("mod_tree") && !v.seenIn.includes("mod_tree") && !v.recheck.error) {
      liveTree ??= await walkTree(confirm, ok(types.tree), anchors.modTree!, max).catch((
        error,
      ) => ({ modules: [], truncated: true, reason: (error as Error).message }));
      if (!liveTree.truncated) v.recheck.inTree = liveTree.modules.includes(at);
    }
  }
  return { modules: [...byAddress.values()], views, unconfirmed };
}

function ok<T>(part: Optional<T>): T {
  if (!("ok" in part)) throw new LayoutError(part.reason);
  return part.ok;
}

const typesOf = new WeakMap<Btf, Optional<ModuleViewTypes>>();

function viewTypes(btf: Btf): Optional<ModuleViewTypes> {
  let types = typesOf.get(btf);
  if (!types) typesOf.set(btf, types = optional(() => resolveModuleViewTypes(btf)));
  return types;
}

function anchorsOf(ctx: ScanContext): ModuleAnchors | string {
  if (!ctx.features.includes("modules")) {
    return "the guest kernel has no loadable modules (no /proc/modules)";
  }
  const sym = (name: string) => ctx.symbols.get(name) || undefined;
  const modules = sym("modules");
  if (modules === undefined) return `kallsyms does not give the address of "modules"`;
  return { modules, moduleKset: sym("module_kset"), modTree: sym("mod_tree") };
}

/** The source of the `modules` section. */
export const modulesSource: Source<"modules"> = {
  name: "modules",
  symbols: MODULE_SYMBOLS,
  plan(b, ctx) {
    const types = viewTypes(ctx.btf);
    const anchors = anchorsOf(ctx);
    if ("ok" in types && typeof anchors !== "string") planModuleViews(b, types.ok, anchors);
  },
  async read(memory, ctx, confirm): Promise<Section<ModuleViews>> {
    const types = viewTypes(ctx.btf);
    if (!("ok" in types)) return { supported: false, reason: types.reason };
    const anchors = anchorsOf(ctx);
    if (typeof anchors === "string") return { supported: false, reason: anchors };
    let value: ModuleViews;
    try {
      value = await readModuleViews(memory, types.ok, anchors, confirm);
    } catch (error) {
      return { supported: false, reason: (error as Error).message };
    }
    const cut = MODULE_VIEWS.filter((v) => value.views[v].truncated);
    return {
      supported: true,
      value,
      truncated: cut.length > 0,
      ...(cut.length
        ? { reason: cut.map((v) => `${v}: ${value.views[v].reason}`).join("; ") }
        : {}),
    };
  },
};
