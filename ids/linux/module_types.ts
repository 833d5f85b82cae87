/**
 * The structures of the module list as one guest kernel lays them out, resolved once from its
 * BTF: `struct module` and its list links, where its memory is described (`mem[]` since Linux
 * 6.4, `core_layout` and `init_layout` before), the refcount and the users' list that exist only
 * with module unloading, and the names of `enum module_state`.
 *
 * @module
 */

import type { Btf } from "../btf/mod.ts";
import { LayoutError, offsetOf, ptr, raw, resolveLayout, sint, str, uint } from "../kernel/mod.ts";

/**
 * Resolves the structures of the module list. Where the kernels differ:
 * - memory: `mem[]` of `struct module_memory` {base, size} (Linux 6.4+), else `core_layout` and
 *   `init_layout` (Linux 6.1);
 * - `refcnt` exists only with CONFIG_MODULE_UNLOAD; without it the refcount is null;
 * - so do `source_list` (the `module_use`s of the modules using one) and `exit`: without them no
 *   module has `usedBy`.
 * @throws {LayoutError} naming the struct and field the kernel lacks.
 */
export function resolveModuleTypes(btf: Btf) {
  return {
    head: resolveLayout(btf, "list_head", { next: ptr("next") }),
    module: resolveLayout(btf, "module", {
      state: uint("state"),
      next: ptr("list.next"),
      name: str("name"),
      taints: raw("taints"),
    }),
    /** Offset of `list` in struct module: a list entry minus this is its module. */
    listOffset: offsetOf(btf, "module", "list"),
    memory: resolveMemory(btf),
    refcnt: optional(() => resolveLayout(btf, "module", { refcnt: sint("refcnt.counter") })),
    users: optional(() => resolveUsers(btf)),
    states: stateNames(btf),
  };
}

/**
 * The modules using a module, as /proc/modules' "used by" column lists them: its `source_list`
 * of `struct module_use`s (linked by their own `source_list`), each naming the user in `source`;
 * and whether it has an `init` but no `exit` function, which /proc/modules shows as
 * `[permanent]`.
 */
function resolveUsers(btf: Btf) {
  return {
    module: resolveLayout(btf, "module", {
      first: ptr("source_list.next"),
      init: ptr("init"),
      exit: ptr("exit"),
    }),
    /** Offset of `source_list` in struct module: the list's head. */
    listOffset: offsetOf(btf, "module", "source_list"),
    use: resolveLayout(btf, "module_use", { next: ptr("source_list.next"), source: ptr("source") }),
    /** Offset of `source_list` in struct module_use: a list entry minus this is its use. */
    useOffset: offsetOf(btf, "module_use", "source_list"),
    name: resolveLayout(btf, "module", { name: str("name") }),
  };
}

/** The resolved module structures of one guest kernel. */
export type ModuleTypes = ReturnType<typeof resolveModuleTypes>;

function optional<T>(resolve: () => T): T | undefined {
  try {
    return resolve();
  } catch (error) {
    if (error instanceof LayoutError) return undefined;
    throw error;
  }
}

/** Where a module's memory is described, in one kernel or the other. */
export type MemoryLayout =
  | {
    kind: "mem";
    layout: ReturnType<typeof memLayout>;
    count: number;
    stride: number;
    base: number;
    size: number;
  }
  | { kind: "layout"; layout: ReturnType<typeof coreLayout> };

const memLayout = (btf: Btf) => resolveLayout(btf, "module", { mem: raw("mem") });
const coreLayout = (btf: Btf) =>
  resolveLayout(btf, "module", {
    coreBase: raw("core_layout.base"),
    coreSize: uint("core_layout.size"),
    initSize: uint("init_layout.size"),
  });

function resolveMemory(btf: Btf): MemoryLayout {
  const problems: string[] = [];
  try {
    const layout = memLayout(btf);
    const array = btf.type(btf.resolve(btf.field("module", "mem").typeId));
    if (array.kind !== "ARRAY") throw new LayoutError(`"mem" of struct "module" is no array`);
    const stride = btf.sizeof(array.typeId);
    const size = btf.field("module_memory", "size");
    if (size.size !== 4) throw new LayoutError(`"size" of "module_memory" is ${size.size} bytes`);
    return {
      kind: "mem",
      layout,
      count: array.count,
      stride,
      base: offsetOf(btf, "module_memory", "base"),
      size: size.offset,
    };
  } catch (error) {
    problems.push((error as Error).message);
  }
  try {
    return { kind: "layout", layout: coreLayout(btf) };
  } catch (error) {
    problems.push((error as Error).message);
  }
  throw new LayoutError(`Cannot resolve the memory of struct "module": ${problems.join("; ")}`);
}

/** Module states, from the kernel's `enum module_state` (MODULE_STATE_LIVE -> "live"). */
function stateNames(btf: Btf): Map<number, string> {
  const id = btf.find("module_state", "ENUM")[0];
  if (id === undefined) throw new LayoutError(`Cannot find enum "module_state" in BTF`);
  const type = btf.type(id);
  if (type.kind !== "ENUM") throw new LayoutError(`"module_state" is not an enum`);
  return new Map(
    type.values.map((v) => [v.value, v.name.replace(/^MODULE_STATE_/, "").toLowerCase()]),
  );
}
