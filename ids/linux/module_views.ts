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
 * Every walk is bounded, detects cycles and reports how it ended.
 *
 * @module
 */

import { isLinked } from "./_list.ts";
import type { Btf } from "../btf/mod.ts";
import { follow, type GuestMemory, type KAddr, type Pointer } from "../memory/mod.ts";
import {
  type Fields,
  LayoutError,
  offsetOf,
  type PlanBuilder,
  ptr,
  readStruct,
  resolveLayout,
  uint,
} from "../kernel/mod.ts";
import type { ScanContext, Section, Source } from "../detect/mod.ts";
import { describeModule, listModules, type Module, planModuleUsers } from "./modules.ts";
import { type ModuleTypes, resolveModuleTypes } from "./module_types.ts";
import { type AddressRange, hex64 } from "./address_owner.ts";
import { fixedLayout, type ImageRegion, planKernelImage } from "./_kernel_image.ts";

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

type Optional<T> = { ok: T } | { reason: string };

function optional<T>(make: () => T): Optional<T> {
  try {
    return { ok: make() };
  } catch (error) {
    if (error instanceof LayoutError || (error as Error).name === "BtfError") {
      return { reason: (error as Error).message };
    }
    throw error;
  }
}

/** What a module's text and memory are, in one kernel or the other. */
function resolveText(btf: Btf, types: ModuleTypes) {
  if (types.memory.kind === "mem") {
    const id = btf.find("mod_mem_type", "ENUM")[0];
    const type = id === undefined ? undefined : btf.type(id);
    if (type?.kind !== "ENUM") throw new LayoutError(`Cannot find enum "mod_mem_type" in BTF`);
    const value = (name: string) => {
      const v = type.values.find((e) => e.name === name)?.value;
      if (v === undefined) throw new LayoutError(`enum "mod_mem_type" has no "${name}"`);
      return v;
    };
    return {
      kind: "mem" as const,
      memory: types.memory,
      text: [value("MOD_TEXT"), value("MOD_INIT_TEXT")],
    };
  }
  return {
    kind: "layout" as const,
    layout: resolveLayout(btf, "module", {
      coreBase: ptr("core_layout.base"),
      coreSize: uint("core_layout.size"),
      coreText: uint("core_layout.text_size"),
      initBase: ptr("init_layout.base"),
      initSize: uint("init_layout.size"),
      initText: uint("init_layout.text_size"),
    }),
  };
}

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

interface Walk {
  modules: KAddr[];
  truncated: boolean;
  reason?: string;
}

async function walkKset(
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

async function walkTree(
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

const u64 = (bytes: Uint8Array, at: number) =>
  new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(at, true);

const range = (base: bigint, size: number): AddressRange[] =>
  base && size > 0 ? [{ start: hex64(base), end: hex64(base + BigInt(size)) }] : [];

async function textOf(
  mem: GuestMemory,
  types: ModuleViewTypes,
  at: KAddr,
): Promise<{ text: AddressRange[]; memory: AddressRange[] }> {
  const t = types.text;
  if (t.kind === "layout") {
    const l = await readStruct(mem, at, t.layout);
    const base = (p: Pointer) => typeof p === "number" ? mem.space.fromKAddr(p) : 0n;
    return {
      text: [...range(base(l.coreBase), l.coreText), ...range(base(l.initBase), l.initText)],
      memory: [...range(base(l.coreBase), l.coreSize), ...range(base(l.initBase), l.initSize)],
    };
  }
  const m = t.memory;
  const { mem: bytes } = await readStruct(mem, at, m.layout);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const region = (i: number) =>
    range(u64(bytes, i * m.stride + m.base), view.getUint32(i * m.stride + m.size, true));
  const all = Array.from({ length: m.count }, (_, i) => i);
  return { text: t.text.flatMap(region), memory: all.flatMap(region) };
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
    Object.assign(v, await textOf(mem, types, at));
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
