/**
 * The process views' re-checks against the live guest: a process a view lacks is hidden only
 * while it is still alive and its own links do not put it in that view, and a cred is shared
 * only while live processes of two thread groups still hold it. A fork or an exit between the
 * walks and the re-check clears the suspicion.
 *
 * @module
 */

import { isLinked } from "./_list.ts";
import type { GuestMemory, KAddr } from "../memory/mod.ts";
import { lookupXarray, readStruct } from "../kernel/mod.ts";
import type { KernelTypes } from "./kernel_types.ts";
import type { Process, ProcessViewName } from "./processes.ts";
import type { PidTypes } from "./pids.ts";
import { taskAddress } from "./_process_fields.ts";

const PF_EXITING = 0x4;
/** Suspicions re-checked per scan; past this the rest are reported unconfirmed, by count. */
export const MAX_CONFIRMS = 64;

/**
 * Re-reads the task at `at` in the live guest: the views it is still missing from. None when
 * it exited, when its memory now holds another task (freed and reused by a fork, which copies
 * its parent's task before it is linked anywhere: the pid and start time tell), or when its own
 * links show it in the view after all (it was linked after the walk).
 */
export async function recheck(
  live: GuestMemory,
  types: KernelTypes,
  pidTypes: PidTypes,
  headAt: KAddr,
  look: { at: KAddr; was: Process; seenIn: readonly ProcessViewName[] },
  missing: ProcessViewName[],
): Promise<ProcessViewName[]> {
  const { at, was } = look;
  try {
    const task = await readStruct(live, at, types.task);
    if (task.exitState !== 0 || (task.flags & PF_EXITING) !== 0) return [];
    if (task.pid !== was.pid || task.startTime !== was.startTime) return [];
    const holds = (view: ProcessViewName): Promise<boolean> =>
      view === "tasks"
        ? isLinked(live, pidTypes.listHead, at + types.tasksOffset)
        : view === "children"
        ? isLinked(live, pidTypes.listHead, at + types.siblingOffset)
        : inIdr(live, types, pidTypes, headAt, at, task.pid);
    // Gone from a view that held it too: it left (its memory freed, perhaps not yet reused),
    // which is no proof of hiding.
    for (const view of look.seenIn) if (!await holds(view)) return [];
    const still: ProcessViewName[] = [];
    for (const view of missing) if (!await holds(view)) still.push(view);
    return still;
  } catch {
    // It cannot be read any more: it is gone (freed), which is no proof of hiding.
    return [];
  }
}

/**
 * The creds that processes of more than one thread group hold, each confirmed against the live
 * guest. A walk is not atomic: a process that exits after the walk read it frees its cred, whose
 * memory a process forked later may get before the walk reaches that one, and both then seem to
 * hold it. A cred is kept when processes of at least two thread groups are still alive live (the
 * same pid and start time, not exiting) and still hold it as their real_cred; past
 * {@linkcode MAX_CONFIRMS} creds, the rest are not confirmed and not kept.
 */
export async function confirmSharedCreds(
  live: GuestMemory,
  types: KernelTypes,
  processes: readonly Process[],
): Promise<{ shared: string[]; cleared: number }> {
  const groups = new Map<string, Process[]>();
  for (const p of processes) {
    if (!p.cred || p.error) continue;
    const group = groups.get(p.cred);
    if (group) group.push(p);
    else groups.set(p.cred, [p]);
  }
  const shared: string[] = [];
  let cleared = 0;
  let looked = 0;
  for (const [cred, group] of groups) {
    // Most creds are one process's: no set of thread groups for those.
    if (group.every((p) => p.tgid === group[0].tgid) || looked++ >= MAX_CONFIRMS) continue;
    const holders = new Set<number>();
    for (const p of group) {
      const at = taskAddress(p, live.space);
      if (at === undefined) continue;
      try {
        const t = await readStruct(live, at, types.task);
        const alive = t.exitState === 0 && (t.flags & PF_EXITING) === 0 &&
          t.pid === p.pid && t.startTime === p.startTime;
        if (alive && typeof t.realCred === "number" && live.space.hex(t.realCred) === cred) {
          holders.add(p.tgid);
        }
      } catch {
        // It cannot be read any more: gone.
      }
    }
    if (holders.size >= 2) shared.push(cred);
    else cleared++;
  }
  return { shared, cleared };
}

/** Whether looking up `nr` in the live pid IDR leads to the task at `at`. */
async function inIdr(
  live: GuestMemory,
  types: KernelTypes,
  pidTypes: PidTypes,
  headAt: KAddr,
  at: KAddr,
  nr: number,
): Promise<boolean> {
  if (nr <= 0) return false;
  const pid = await lookupXarray(live, pidTypes.xarray, headAt, nr);
  if (pid === undefined) return false;
  return (await readStruct(live, pid, pidTypes.pid)).tasks === at + types.pidLinksOffset;
}
