/**
 * The loaded kernel modules, rebuilt from guest kernel memory as /proc/modules shows them: the
 * `modules` list (a `list_head` whose entries are `struct module`s, linked by their `list`).
 *
 * The walk is bounded, detects cycles and reports how it ended; guest memory is hostile. A
 * module whose fields make no sense is listed with an error; a broken list link ends the walk,
 * reported as truncated with the reason. The structures it reads, as each kernel lays them
 * out, are resolved in `module_types.ts`.
 *
 * @module
 */

import { follow, type GuestMemory, type KAddr } from "../memory/mod.ts";
import { type Fields, hexOf, type NodeRef, type PlanBuilder, readStruct } from "../kernel/mod.ts";
import type { MemoryLayout, ModuleTypes } from "./module_types.ts";

/** One loaded module. */
export interface Module {
  /** `name`, as `decodeName()` (kernel/name.ts) maps its bytes: UTF-8, `\xNN`, `\\`. */
  name: string;
  /** The bytes of `name` in hex, when its text does not show them plainly; absent otherwise. */
  nameHex?: string;
  /** Address of its `struct module`. */
  module: string;
  /** Start of its text (`mem[MOD_TEXT].base`; `core_layout.base` before Linux 6.4). */
  base: string;
  /** Bytes of all its memory, as /proc/modules' size. */
  size: number;
  /** `live`, `coming`, `going` or `unformed`; `unknown` (with an error) for anything else. */
  state: string;
  /** References, as /proc/modules prints them (refcnt - 1); null without module unloading. */
  refcount: number | null;
  /** The raw taint mask (`taints`), 64-bit hex. */
  taints: string;
  /** The taint letters /proc/modules shows, e.g. "OE". */
  taintFlags: string;
  /**
   * The names of the modules using it, in the order /proc/modules' "used by" lists them (the
   * latest first); absent when the kernel does not record them (no CONFIG_MODULE_UNLOAD) or they
   * could not be read.
   */
  usedBy?: string[];
  /** It has an init function and no exit function: it cannot be unloaded (`[permanent]`). */
  permanent?: true;
  /** Set when some of its fields make no sense. */
  error?: string;
}

/** The result of a walk. */
export interface ModuleList {
  modules: Module[];
  /** The walk ended before returning to the list head. */
  truncated: boolean;
  reason?: string;
}

/** Options of {@linkcode listModules} and {@linkcode planModules}. */
export interface ModuleOptions {
  /** Most modules visited, and most users of one module. @default 65536 */
  maxModules?: number;
}

const MAX_MODULES = 65536;

/**
 * The module taint flags of the kernel's taint_flags[] table (kernel/panic.c): bit and letter
 * of those whose `module` is true, in bit order, as module_flags_taint() prints them.
 */
const MODULE_TAINTS: readonly [number, string][] = [
  [0, "P"], // TAINT_PROPRIETARY_MODULE
  [1, "F"], // TAINT_FORCED_MODULE
  [10, "C"], // TAINT_CRAP (staging)
  [12, "O"], // TAINT_OOT_MODULE
  [13, "E"], // TAINT_UNSIGNED_MODULE
  [15, "K"], // TAINT_LIVEPATCH
  [16, "X"], // TAINT_AUX
  [17, "T"], // TAINT_RANDSTRUCT
  [18, "N"], // TAINT_TEST
  [19, "J"], // TAINT_FWCTL (6.15+)
];

/** The letters /proc/modules shows for a module's taint mask. */
export function taintLetters(taints: bigint): string {
  return MODULE_TAINTS.filter(([bit]) => (taints >> BigInt(bit)) & 1n).map(([, c]) => c).join("");
}

function u64(bytes: Uint8Array, at = 0): bigint {
  let v = 0n;
  for (let i = 7; i >= 0; i--) v = (v << 8n) | BigInt(bytes[at + i]);
  return v;
}

const hex64 = (v: bigint) => "0x" + v.toString(16).padStart(16, "0");

/**
 * Lists the modules on the list whose `list_head` is at `head` (the kernel's `modules` symbol).
 * @throws {GuestReadError} only when the list head itself cannot be read.
 */
export async function listModules(
  mem: GuestMemory,
  types: ModuleTypes,
  head: KAddr,
  options: ModuleOptions = {},
): Promise<ModuleList> {
  const maxModules = options.maxModules ?? MAX_MODULES;
  const modules: Module[] = [];
  const seen = new Set<KAddr>();
  let next = (await readStruct(mem, head, types.head)).next;
  let from = `the list head ${mem.space.hex(head)}`;
  let reason: string | undefined;
  for (;;) {
    let entry: KAddr;
    try {
      entry = follow(next, `list.next of ${from}`);
    } catch (error) {
      reason = (error as Error).message;
      break;
    }
    if (entry === head) break;
    const at = entry - types.listOffset;
    if (seen.has(at)) {
      reason = `the module list loops back to ${mem.space.hex(at)} without reaching its head`;
      break;
    }
    if (modules.length >= maxModules) {
      reason = `more than ${maxModules} modules`;
      break;
    }
    let module: Fields<ModuleTypes["module"]>;
    try {
      module = await readStruct(mem, at, types.module);
    } catch (error) {
      reason = `module ${mem.space.hex(at)}, linked from ${from}: ${(error as Error).message}`;
      break;
    }
    seen.add(at);
    modules.push(await describeModule(mem, types, at, module, maxModules));
    next = module.next;
    from = `module ${mem.space.hex(at)}`;
  }
  return { modules, truncated: reason !== undefined, reason };
}

/**
 * Describes the module at `at` whose fields `module` were read, as {@linkcode listModules} lists
 * it, with at most `maxUsers` users; fields that cannot be read or make no sense go to its
 * `error`.
 */
export async function describeModule(
  mem: GuestMemory,
  types: ModuleTypes,
  at: KAddr,
  module: Fields<ModuleTypes["module"]>,
  maxUsers = MAX_MODULES,
): Promise<Module> {
  const taints = u64(module.taints);
  const state = types.states.get(module.state);
  const m: Module = {
    name: module.name,
    ...hexOf("nameHex", module.name),
    module: mem.space.hex(at),
    base: "",
    size: -1,
    state: state ?? "unknown",
    refcount: null,
    taints: hex64(taints),
    taintFlags: taintLetters(taints),
  };
  const errors: string[] = [];
  if (state === undefined) errors.push(`state ${module.state} is no module_state`);
  try {
    Object.assign(m, await memoryOf(mem, types.memory, at));
    if (types.refcnt) m.refcount = (await readStruct(mem, at, types.refcnt)).refcnt - 1;
  } catch (error) {
    errors.push((error as Error).message);
  }
  if (types.users) {
    try {
      Object.assign(m, await usersOf(mem, types.users, at, maxUsers));
    } catch (error) {
      errors.push((error as Error).message);
    }
  }
  if (errors.length) m.error = errors.join("; ");
  return m;
}

/**
 * The users of the module at `at`, walking its `source_list` (bounded, cycles detected), and
 * whether it is permanent.
 * @throws {Error} when a link or a user cannot be followed or read, or the list is too long.
 */
async function usersOf(
  mem: GuestMemory,
  users: NonNullable<ModuleTypes["users"]>,
  at: KAddr,
  max: number,
): Promise<{ usedBy: string[]; permanent?: true }> {
  const { first, init, exit } = await readStruct(mem, at, users.module);
  const head = at + users.listOffset;
  const usedBy: string[] = [];
  const seen = new Set<KAddr>();
  let next = first;
  let from = `the source_list of module ${mem.space.hex(at)}`;
  for (;;) {
    const entry = follow(next, `source_list.next of ${from}`);
    if (entry === head) break;
    const use = entry - users.useOffset;
    if (seen.has(use)) throw new Error(`Its source_list loops back to ${mem.space.hex(use)}`);
    if (seen.size >= max) throw new Error(`It has more than ${max} users`);
    seen.add(use);
    const fields = await readStruct(mem, use, users.use);
    const source = mem.space.follow(fields.source, "source of module_use", use);
    usedBy.push((await readStruct(mem, source, users.name)).name);
    next = fields.next;
    from = `module_use ${mem.space.hex(use)}`;
  }
  // print_unload_info(): a module with an init function and none to exit is "[permanent]".
  return init !== null && exit === null ? { usedBy, permanent: true } : { usedBy };
}

async function memoryOf(
  mem: GuestMemory,
  memory: MemoryLayout,
  at: KAddr,
): Promise<{ base: string; size: number }> {
  if (memory.kind === "layout") {
    const l = await readStruct(mem, at, memory.layout);
    return { base: hex64(u64(l.coreBase)), size: l.coreSize + l.initSize };
  }
  const { mem: bytes } = await readStruct(mem, at, memory.layout);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let size = 0;
  for (let i = 0; i < memory.count; i++) {
    size += view.getUint32(i * memory.stride + memory.size, true);
  }
  return { base: hex64(u64(bytes, memory.base)), size };
}

/**
 * The byte ranges of a `struct module` that {@linkcode describeModule} reads beyond
 * `types.module`'s fields (its memory, refcount and users' list), for a plan's module node.
 */
function moduleExtra(types: ModuleTypes): { off: number; len: number }[] {
  return [types.memory.layout, types.refcnt, types.users?.module].flatMap((layout) =>
    layout ? layout.fields.map((f) => ({ off: f.offset, len: f.size })) : []
  );
}

/**
 * Adds to `b` what {@linkcode describeModule} reads from the modules `module` visits beyond their
 * own fields (which its node must copy: `types.users.module`): the `module_use`s of their users
 * and each user's name (the user is a module too, visited as `module`).
 */
export function planModuleUsers(
  b: PlanBuilder,
  types: ModuleTypes,
  module: NodeRef,
  max = MAX_MODULES,
): void {
  if (!types.users) return;
  const use = b.node(types.users.use);
  b.list(module, types.users.listOffset, use, types.users.useOffset, { max });
  b.ptr(use, "source", module);
}

/** Adds to `b` what {@linkcode listModules} reads: the list head and every module on it. */
export function planModules(
  b: PlanBuilder,
  types: ModuleTypes,
  head: KAddr,
  options: ModuleOptions = {},
): void {
  const max = options.maxModules ?? MAX_MODULES;
  const list = b.node(types.head);
  const module = b.node(types.module, { extra: moduleExtra(types) });
  b.root(head, list);
  b.list(list, 0, module, types.listOffset, { max });
  planModuleUsers(b, types, module, max);
}
