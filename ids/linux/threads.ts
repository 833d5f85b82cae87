/**
 * The threads of each process, as /proc/PID/task lists them: every task of its thread group
 * (`signal->thread_head`, entries linked by `thread_node`), the leader included, each with its
 * own tid and `comm` (a thread names itself with prctl(PR_SET_NAME)).
 *
 * The plan (processes.ts's `planTasks`, `TaskNodes.thread`) copies each thread's fields only; a
 * leader, copied whole as a process, is not copied again. Guest memory is hostile: a thread
 * list is bounded per process and in all, checked for loops, and a list that cannot be walked
 * to its end is reported with the reason, its threads so far kept.
 *
 * @module
 */

import type { AddressSpace, GuestMemory, KAddr } from "../memory/mod.ts";
import { type Fields, hexOf, peekStruct, readStruct } from "../kernel/mod.ts";
import type { KernelTypes } from "./kernel_types.ts";
import type { Process } from "./processes.ts";
import { stateLetter, taskAddress } from "./_process_fields.ts";

/** One thread of a process. */
export interface Thread {
  /** Its own pid (the tid), as /proc/PID/task/TID names it. */
  tid: number;
  /** Its process (thread group). */
  tgid: number;
  /** Its own `comm`, decoded as process names are. */
  comm: string;
  /** The bytes of `comm` in hex, when its text does not show them plainly. */
  commHex?: string;
  /** One letter, as in `ps`. */
  state: string;
  /** Address of its task_struct. */
  task: string;
  /** Set when it does not belong to its process's thread group as it should. */
  error?: string;
}

/** Most threads of one process (the kernel allows more, but no real process has them). */
export const MAX_THREADS = 1 << 16;

/** Options of {@linkcode listThreads}. */
export interface ThreadOptions {
  /** Most threads per process. @default MAX_THREADS */
  maxPerProcess?: number;
  /** Most threads in all. @default 1 << 22 */
  maxThreads?: number;
}

type ThreadFields = Fields<KernelTypes["thread"]>;

/**
 * Sets each process's `threadList` to its threads. Never throws: a list that cannot be walked
 * keeps what was read, and the reasons are returned (at most one per process).
 */
export async function listThreads(
  mem: GuestMemory,
  types: KernelTypes,
  processes: Process[],
  options: ThreadOptions = {},
): Promise<string[]> {
  const perProcess = options.maxPerProcess ?? MAX_THREADS;
  let left = options.maxThreads ?? 1 << 22;
  const problems: string[] = [];
  const read = (at: KAddr): ThreadFields | Promise<ThreadFields> =>
    peekStruct(mem, at, types.thread) ?? readStruct(mem, at, types.thread);
  for (const process of processes) {
    const leader = taskAddress(process, mem.space);
    const threads: Thread[] = process.threadList = [];
    if (leader === undefined) continue;
    try {
      const first = await read(leader);
      if (first.signal === null) {
        // init_task's own, or a task being freed: it is its only thread.
        threads.push(threadOf(first, leader, process.tgid, mem.space));
        continue;
      }
      const signal = mem.space.follow(first.signal, "signal of task", leader);
      const head = signal + types.threadHeadOffset;
      const s = peekStruct(mem, signal, types.signal) ??
        await readStruct(mem, signal, types.signal);
      const seen = new Set<KAddr>();
      for (
        let e = mem.space.follow(s.threadHeadNext, "thread_head.next of signal", signal);
        e !== head;
      ) {
        const at = e - types.threadNodeOffset;
        if (seen.has(at)) throw new Error(`the thread list loops back to ${mem.space.hex(at)}`);
        if (threads.length >= perProcess) throw new Error(`more than ${perProcess} threads`);
        if (left-- <= 0) {
          problems.push(`more than ${options.maxThreads ?? 1 << 22} threads in all`);
          return problems;
        }
        seen.add(at);
        // The leader is on its own list: decoded once.
        const t = at === leader ? first : await read(at);
        threads.push(threadOf(t, at, process.tgid, mem.space));
        e = mem.space.follow(t.threadNext, "thread_node.next of task", at);
      }
    } catch (error) {
      problems.push(`threads of pid ${process.pid}: ${(error as Error).message}`);
    }
  }
  return problems;
}

function threadOf(t: ThreadFields, at: KAddr, tgid: number, space: AddressSpace): Thread {
  const thread: Thread = {
    tid: t.pid,
    tgid: t.tgid,
    comm: t.comm,
    ...hexOf("commHex", t.comm),
    state: stateLetter(t.state, t.exitState),
    task: space.hex(at),
  };
  if (t.tgid !== tgid) thread.error = `its tgid is ${t.tgid}, not its process's ${tgid}`;
  return thread;
}
