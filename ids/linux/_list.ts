/**
 * Whether a `list_head` is linked into a list, judged by its neighbour, for re-checking an object
 * a view did not find: an entry is linked when the entry before it points to it, so that a walk
 * of the list (which follows `next`, as every view and the kernel's own iterators do) reaches it.
 * An entry taken off its list is not: `list_del` poisons its links, `list_del_rcu` poisons
 * `prev`, `list_del_init` points both at itself, and a hand-made unlink leaves a `prev` that no
 * longer points to it. The entry after it is not asked: on a busy list (a fork storm appending
 * tasks behind the last one) it changes between two reads, and its `prev` says nothing about
 * whether a walk reaches the entry.
 *
 * @module
 */

import type { GuestMemory, KAddr, Pointer } from "../memory/mod.ts";
import { type Fields, readStruct, type StructLayout } from "../kernel/mod.ts";

/** The layout this needs: `list_head` with `next` and `prev` pointers. */
export type ListHeadLayout = StructLayout<{ next: Pointer; prev: Pointer }>;

/**
 * Whether the list_head at `at`, whose links read `next` and `prev` (read from `mem` when not
 * given), is linked: both are list pointers and the entry before it, read from `mem`, points to it.
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
  return (await readStruct(mem, prev, listHead)).next === at;
}
