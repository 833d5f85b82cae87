/**
 * Modules for the rules' tests that place addresses among modules (`hooked_pointer`,
 * `ftrace_hook`): each one's text and memory at a base, and the views that held it.
 *
 * @module
 */

import type { ModuleViews, ViewedModule } from "../linux/mod.ts";

const hex = (v: bigint) => "0x" + v.toString(16);

/** A live module at `base`: text is its first 8 KiB, memory 36 KiB, its struct at +32 KiB. */
export function viewedModule(
  name: string,
  base: bigint,
  seenIn: ViewedModule["seenIn"],
): ViewedModule {
  return {
    name,
    module: hex(base + 0x8000n),
    base: hex(base),
    size: 0x9000,
    state: "live",
    refcount: 0,
    taints: "0x0000000000000000",
    taintFlags: "",
    text: [{ start: hex(base), end: hex(base + 0x2000n) }],
    memory: [{ start: hex(base), end: hex(base + 0x9000n) }],
    seenIn,
  };
}

/** The module views of `modules`, each view counting the modules it held, none truncated. */
export function moduleViews(modules: ViewedModule[]): ModuleViews {
  const walk = (view: ViewedModule["seenIn"][number]) => ({
    present: true,
    count: modules.filter((m) => m.seenIn.includes(view)).length,
    truncated: false,
  });
  return {
    modules,
    views: { list: walk("list"), kset: walk("kset"), mod_tree: walk("mod_tree") },
    unconfirmed: 0,
  };
}
