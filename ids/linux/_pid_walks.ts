/**
 * The two process views beyond the task list, walked: the init pid namespace's pid IDR (each
 * pid's task, and that task's process leader) and the `children` lists from init_task down
 * (every thread's, since a child is on the list of the thread that forked it). Each task is
 * decoded once per scan, whichever view reaches it first. Every walk is bounded and reports how
 * it ended in its {@linkcode ViewWalk}.
 *
 * @module
 */

import { follow, type GuestMemory, type KAddr } from "../memory/mod.ts";
import { type Fields, peekStruct, readStruct, readXarray } from "../kernel/mod.ts";
import type { KernelTypes } from "./kernel_types.ts";
import type { PidTypes, ViewWalk } from "./pids.ts";

type TaskFields = Fields<KernelTypes["taskLinks"]>;

/**
 * The tasks of one scan, each decoded once (several views read each): `peek` serves one the
 * snapshot holds without an await, `read` fetches what it does not.
 */
export class ScanTasks {
  #decoded = new Map<KAddr, TaskFields>();
  constructor(readonly mem: GuestMemory, readonly layout: KernelTypes["taskLinks"]) {}

  peek(at: KAddr): TaskFields | undefined {
    let t = this.#decoded.get(at);
    if (!t && (t = peekStruct(this.mem, at, this.layout))) this.#decoded.set(at, t);
    return t;
  }

  async read(at: KAddr): Promise<TaskFields> {
    const t = this.peek(at) ?? await readStruct(this.mem, at, this.layout);
    this.#decoded.set(at, t);
    return t;
  }
}
type ReadTask = ScanTasks;

/** The process leaders of the tasks the pid IDR holds. */
export async function idrLeaders(
  mem: GuestMemory,
  task: ReadTask,
  types: KernelTypes,
  pidTypes: PidTypes,
  headAt: KAddr,
  maxTasks: number,
  walk: ViewWalk,
): Promise<Set<KAddr>> {
  const leaders = new Set<KAddr>();
  const contents = await readXarray(mem, pidTypes.xarray, headAt, { maxEntries: maxTasks });
  walk.truncated = contents.truncated;
  walk.reason = contents.reason;
  for (const { index, value: pid } of contents.entries) {
    try {
      const links = peekStruct(mem, pid, pidTypes.pid) ?? await readStruct(mem, pid, pidTypes.pid);
      if (links.tasks === null) continue; // allocated, not yet attached, or already detached
      const at = follow(links.tasks, `pid ${index}'s first task`) - types.pidLinksOffset;
      const t = task.peek(at) ?? await task.read(at);
      if (t.pid !== index) {
        throw new Error(`task ${mem.space.hex(at)} of pid ${index} has pid ${t.pid}`);
      }
      leaders.add(t.pid === t.tgid ? at : mem.space.follow(t.groupLeader, "group_leader of", at));
    } catch (error) {
      walk.truncated = true;
      walk.reason ??= `pid ${index} (struct pid ${mem.space.hex(pid)}): ${
        (error as Error).message
      }`;
    }
  }
  walk.count = leaders.size;
  return leaders;
}

/** The threads of the process led by `leader` (its `signal->thread_head` list), at most `max`. */
async function threadsOf(
  mem: GuestMemory,
  task: ReadTask,
  types: KernelTypes,
  leader: KAddr,
  max: number,
): Promise<KAddr[]> {
  const t = task.peek(leader) ?? await task.read(leader);
  if (t.signal === null) return [leader]; // init_task's own, or a task being freed
  const signal = mem.space.follow(t.signal, "signal of", leader);
  const head = signal + types.threadHeadOffset;
  const threads: KAddr[] = [];
  const s = peekStruct(mem, signal, types.signal) ?? await readStruct(mem, signal, types.signal);
  let e = follow(s.threadHeadNext, "thread_head");
  while (e !== head) {
    if (threads.length >= max) {
      throw new Error(`more than ${max} threads in ${mem.space.hex(leader)}`);
    }
    const thread = e - types.threadNodeOffset;
    threads.push(thread);
    e = follow((task.peek(thread) ?? await task.read(thread)).threadNext, "thread_node.next");
  }
  return threads.length ? threads : [leader];
}

/**
 * Every process reached through `children` lists from init_task, breadth first. A child is on
 * the list of the thread that forked it, so every thread's list is walked.
 */
export async function treeTasks(
  mem: GuestMemory,
  task: ReadTask,
  types: KernelTypes,
  initTask: KAddr,
  maxTasks: number,
  walk: ViewWalk,
): Promise<Set<KAddr>> {
  const seen = new Set<KAddr>();
  const queue: KAddr[] = [initTask];
  const stop = (reason: string) => {
    walk.truncated = true;
    walk.reason ??= reason;
  };
  const parents: KAddr[] = [];
  for (let q = 0; q < queue.length; q++) {
    parents.length = 0;
    try {
      parents.push(
        ...(q === 0 ? [initTask] : await threadsOf(mem, task, types, queue[q], 1 << 16)),
      );
    } catch (error) {
      stop(`the threads of ${mem.space.hex(queue[q])}: ${(error as Error).message}`);
      parents.push(queue[q]);
    }
    for (const parent of parents) {
      if (!await childrenOf(parent)) {
        walk.count = seen.size;
        return seen;
      }
    }
  }
  walk.count = seen.size;
  return seen;

  /** Adds the children of `parent` to the queue; false when past the bound. */
  async function childrenOf(parent: KAddr): Promise<boolean> {
    const head = parent + types.childrenOffset;
    try {
      let e = follow((task.peek(parent) ?? await task.read(parent)).childrenNext, "children.next");
      for (let n = 0; e !== head; n++) {
        const child = e - types.siblingOffset;
        if (seen.has(child) || child === initTask) {
          stop(`the children list of ${mem.space.hex(parent)} loops at ${mem.space.hex(child)}`);
          break;
        }
        if (seen.size >= maxTasks) {
          stop(`more than ${maxTasks} tasks`);
          return false;
        }
        seen.add(child);
        queue.push(child);
        e = follow((task.peek(child) ?? await task.read(child)).siblingNext, "sibling.next");
      }
    } catch (error) {
      stop(`the children list of ${mem.space.hex(parent)}: ${(error as Error).message}`);
    }
    return true;
  }
}
