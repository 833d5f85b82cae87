/**
 * Whether a `list_head` is linked into a list, judged by its neighbours, for re-checking an
 * object a view did not find: an entry is linked when both its neighbours point back to it. An
 * entry taken off its list is not: `list_del` poisons its links, `list_del_rcu` poisons `prev`,
 * `list_del_init` points both at itself, and a hand-made unlink leaves neighbours that no longer
 * point to it.
 *
 * @module
 */

import type { KAddr, Pointer } from "../memory/address.ts";
import type { GuestMemory } from "../memory/guest_memory.ts";
import { type Fields, readStruct, type StructLayout } from "../kernel/layout.ts";

/** The layout this needs: `list_head` with `next` and `prev` pointers. */
export type ListHeadLayout = StructLayout<{ next: Pointer; prev: Pointer }>;

/**
 * Whether the list_head at `at`, whose links read `next` and `prev` (read from `mem` when not
 * given), is linked: both neighbours, read from `mem`, point back to it.
 */
export async function isLinked(
  mem: GuestMemory,
  listHead: ListHeadLayout,
  at: KAddr,
  links?: Fields<ListHeadLayout>,
): Promise<boolean> {
  const { next, prev } = links ?? await readStruct(mem, at, listHead);
  if (typeof next !== "number" || typeof prev !== "number" || next === at || prev === at) {
    return false;
  }
  const [n, p] = await Promise.all([
    readStruct(mem, next, listHead),
    readStruct(mem, prev, listHead),
  ]);
  return n.prev === at && p.next === at;
}
