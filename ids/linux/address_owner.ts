/**
 * Who owns an address: ranges of guest memory as 64-bit hex, and the owner of a code address
 * (core kernel text, a listed module, or a module only the kset or mod_tree hold), which the
 * hooked-pointer and ftrace rules name for each pointer outside core text.
 *
 * @module
 */

import type { ModuleViews } from "./module_views.ts";

/** [start, end) of guest memory, as 64-bit hex. */
export interface AddressRange {
  start: string;
  end: string;
}

/** `0x` and 16 hex digits. */
export const hex64 = (v: bigint) => "0x" + v.toString(16).padStart(16, "0");

/** Who owns an address: core kernel text, a listed module, a module only other views hold. */
export type Owner =
  | { kind: "kernel" }
  | { kind: "module"; name: string }
  | { kind: "hidden-module"; name: string }
  | { kind: "none" };

const inRange = (v: bigint, r: AddressRange) => v >= BigInt(r.start) && v < BigInt(r.end);

/** Whether `value` lies in one of `ranges`. */
export function inRanges(value: bigint, ranges: readonly AddressRange[]): boolean {
  return ranges.some((r) => inRange(value, r));
}

/**
 * The owner of the code address `value`: core text, else the module whose text holds it (listed
 * when the module list holds it, hidden when only the kset or mod_tree do), else none.
 */
export function ownerOf(
  value: bigint,
  core: readonly AddressRange[],
  modules: ModuleViews | undefined,
): Owner {
  if (inRanges(value, core)) return { kind: "kernel" };
  const module = modules?.modules.find((m) => inRanges(value, m.text));
  if (!module) return { kind: "none" };
  return module.seenIn.includes("list")
    ? { kind: "module", name: module.name }
    : { kind: "hidden-module", name: module.name };
}

/** The module whose memory holds `address` (a table, an ops structure), if any. */
export function moduleHolding(address: bigint, modules: ModuleViews | undefined) {
  return modules?.modules.find((m) => inRanges(address, m.memory));
}
