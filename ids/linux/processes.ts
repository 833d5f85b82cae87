/**
 * The process list, rebuilt from guest kernel memory: init_task's `tasks` list, one entry per
 * thread-group leader, as `ps` shows processes.
 *
 * The walk is bounded, detects cycles and reports how it ended; guest memory is hostile. A
 * process whose own fields cannot be read is listed with an error; a broken list link ends the
 * walk, reported as truncated with the reason. A task's fields are made into its process in
 * _process_fields.ts.
 *
 * @module
 */

import type { GuestMemory, KAddr } from "../memory/mod.ts";
import { type NodeRef, peekStruct, type PlanBuilder, readStruct } from "../kernel/mod.ts";
import type { KernelTypes } from "./kernel_types.ts";
import { type CgroupSupport, NamespaceReader } from "./namespaces.ts";
import { namespaceTaskRanges, planNamespaces } from "./namespace_plan.ts";
import { MAX_THREADS, type Thread } from "./threads.ts";
import { describe, describeCached } from "./_process_fields.ts";

export { taskAddress } from "./_process_fields.ts";

/** One process as the guest kernel holds it. */
export interface Process {
  pid: number;
  tgid: number;
  ppid: number;
  /** `comm`, as `decodeName()` (kernel/name.ts) maps its bytes: UTF-8, `\xNN`, `\\`. */
  comm: string;
  /**
   * The bytes of `comm` in hex, when its text does not show them plainly (an invalid byte, a
   * backslash, a control or invisible character); absent otherwise.
   */
  commHex?: string;
  /** One letter, as in `ps` (R, S, D, T, t, X, Z, P, I). */
  state: string;
  uid: number;
  euid: number;
  suid: number;
  fsuid: number;
  gid: number;
  egid: number;
  sgid: number;
  fsgid: number;
  /** Capability sets as 64-bit hex ("0x000001ffffffffff"); absent when the cred was not read. */
  capEffective?: string;
  capPermitted?: string;
  capInheritable?: string;
  /**
   * Its real_cred is init_task's: it runs with the kernel's initial credentials. Absent when
   * init_task's real_cred is not a kernel address.
   */
  initCred?: boolean;
  /** A kernel thread (PF_KTHREAD). */
  kthread: boolean;
  /** Address of its task_struct. */
  task: string;
  /** Address of its (objective) credentials. */
  cred: string;
  /** Nanoseconds from boot to its start (with its task address, what tells one process from a later one). */
  startTime?: number;
  /** Its exec count (`self_exec_id`): a change of uid without a change of this is no exec. */
  execId?: number;
  /**
   * The kernel views that hold it (pids.ts): `tasks` (init_task's task list), `pid_idr` (the
   * init pid namespace's pid IDR) and `children` (its parent's children list). Absent when only
   * the task list was read.
   */
  seenIn?: ProcessViewName[];
  /** Threads in its thread group (`signal->nr_threads`, as /proc/PID/status `Threads:`). */
  threads?: number;
  /**
   * Its threads, the leader first or among them, as /proc/PID/task lists them: only when asked
   * for (`ps --threads`, `?threads=true`; threads.ts).
   */
  threadList?: Thread[];
  /** Its pid namespace's inum, as `readlink /proc/PID/ns/pid` shows `pid:[N]`. */
  pidNs?: number;
  /** Its pid in that namespace: the last value of `NSpid:` in /proc/PID/status. */
  nsPid?: number;
  /** Its network namespace's inum (`/proc/PID/ns/net`); absent once it has exited. */
  netNs?: number;
  /**
   * Its cgroup in the cgroup v2 hierarchy, as the `0::` line of /proc/PID/cgroup (names decoded
   * as `comm` is); absent when the guest has no v2 hierarchy mounted (the list says so).
   */
  cgroup?: string;
  /** The bytes of `cgroup` in hex, when its text does not show them plainly. */
  cgroupHex?: string;
  /** Set when some of this process's fields could not be read; they are then -1 or "". */
  error?: string;
}

/** The independent kernel structures a process is reached through. */
export type ProcessViewName = "tasks" | "pid_idr" | "children";

/** The result of a walk. */
export interface ProcessList {
  processes: Process[];
  /** The walk ended before returning to its start. */
  truncated: boolean;
  /** Why it was truncated. */
  reason?: string;
  /** Address of init_task. */
  initTask?: string;
  /** Whether the processes have cgroup paths, or why not. */
  cgroups?: CgroupSupport;
}

/** Options of {@linkcode listProcesses}. */
export interface ListOptions {
  /** Most tasks visited. @default 1_000_000 */
  maxTasks?: number;
}

/**
 * Finds init_task by following real_parent from `anchor` (any task) to the task with pid 0.
 * @throws {Error} when the chain is longer than allowed, loops, or ends without pid 0.
 */
export async function findInitTask(
  mem: GuestMemory,
  types: KernelTypes,
  anchor: KAddr,
  maxAncestors = 4096,
): Promise<KAddr> {
  const seen = new Set<KAddr>();
  let at = anchor;
  for (let hop = 0; hop <= maxAncestors; hop++) {
    if (seen.has(at)) {
      throw new Error(`Cannot find init_task: real_parent chain loops at ${mem.space.hex(at)}`);
    }
    seen.add(at);
    const task = await readStruct(mem, at, types.task);
    if (task.pid === 0) return at;
    at = mem.space.follow(task.realParent, "real_parent of task", at);
  }
  throw new Error(`Cannot find init_task: more than ${maxAncestors} real_parent hops`);
}

/** The nodes of a task walk, for plans that go on from each task. */
export interface TaskNodes {
  /** init_task, whose `tasks` list is walked. */
  root: NodeRef<KernelTypes["task"]>;
  /** Every task on the list, and every real_parent. */
  task: NodeRef<KernelTypes["task"]>;
  /** Each task's signal_struct: its thread count and thread list. */
  signal: NodeRef<KernelTypes["signal"]>;
  /** Each task's `struct pid` (namespace_plan.ts), which the pid IDR's walk also reaches. */
  pid: NodeRef<KernelTypes["ns"]["pid"]>;
  /**
   * The threads on each signal's thread list, copied for their `thread` fields (a leader
   * copied as a process is not copied again); planned on first call.
   */
  thread(): NodeRef<KernelTypes["thread"]>;
}

/**
 * Adds to `b` what {@linkcode listProcesses} reads: init_task, its `tasks` list, each task's
 * real_parent, real_cred, signal (its thread count), namespaces and cgroup. Returns the task
 * nodes, so other views' plans can go on from them.
 */
export function planTasks(b: PlanBuilder, types: KernelTypes, initTask: KAddr): TaskNodes {
  const root = b.node(types.task);
  const task = b.node(types.task, { extra: namespaceTaskRanges(types.ns) });
  const cred = b.node(types.cred);
  b.root(initTask, root);
  b.list(root, types.tasksOffset, task, types.tasksOffset);
  b.ptr(task, "realParent", task);
  b.ptr(task, "realCred", cred);
  const signal = b.node(types.signal, { fieldsOnly: true });
  b.ptr(task, "signal", signal);
  const pid = planNamespaces(b, types.ns, task);
  let thread: NodeRef<KernelTypes["thread"]> | undefined;
  return {
    root,
    task,
    signal,
    pid,
    thread() {
      if (!thread) {
        thread = b.node(types.thread, { fieldsOnly: true, coveredBy: task });
        b.list(signal, types.threadHeadOffset, thread, types.threadNodeOffset, {
          max: MAX_THREADS,
        });
      }
      return thread;
    },
  };
}

/**
 * Lists the guest's processes: the tasks on init_task's `tasks` list.
 * @throws {GuestReadError} only when init_task itself cannot be read; everything after is
 * reported in the list.
 */
export async function listProcesses(
  mem: GuestMemory,
  types: KernelTypes,
  initTask: KAddr,
  options: ListOptions = {},
): Promise<ProcessList> {
  const maxTasks = options.maxTasks ?? 1_000_000;
  const head = initTask;
  const processes: Process[] = [];
  const seen = new Set<KAddr>([head]);
  let current = await readStruct(mem, head, types.task);
  const initCred = typeof current.realCred === "number" ? current.realCred : undefined;
  // Parents come before their children on the list: their tgids are at hand, not read again.
  const tgids = new Map<KAddr, number>([[head, current.tgid]]);
  const ns = new NamespaceReader(mem, types.ns);
  const { space } = mem;
  let reason: string | undefined;
  for (let at = head;;) {
    let next: KAddr;
    try {
      next = space.follow(current.tasksNext, "tasks.next of task", at) - types.tasksOffset;
    } catch (error) {
      reason = (error as Error).message;
      break;
    }
    if (next === head) break;
    if (seen.has(next)) {
      reason = `the tasks list loops back to ${space.hex(next)} without reaching init_task`;
      break;
    }
    if (processes.length >= maxTasks) {
      reason = `more than ${maxTasks} tasks`;
      break;
    }
    try {
      current = peekStruct(mem, next, types.task) ?? await readStruct(mem, next, types.task);
    } catch (error) {
      reason = `task ${space.hex(next)}, linked from ${space.hex(at)}: ${(error as Error).message}`;
      break;
    }
    seen.add(next);
    tgids.set(next, current.tgid);
    processes.push(
      describeCached(mem, types, next, current, initCred, tgids, ns) ??
        await describe(mem, types, next, current, initCred, tgids, ns),
    );
    at = next;
  }
  return {
    processes,
    truncated: reason !== undefined,
    reason,
    initTask: space.hex(head),
    cgroups: ns.cgroupSupport(),
  };
}

/**
 * Describes the task at `at` as {@linkcode listProcesses} would (its parent's tgid and its cred
 * read too), for a task reached some other way than the task list.
 * @throws {GuestReadError} when the task itself cannot be read.
 */
export async function describeTask(
  mem: GuestMemory,
  types: KernelTypes,
  at: KAddr,
  initCred?: KAddr,
): Promise<Process> {
  const task = await readStruct(mem, at, types.task);
  return describe(mem, types, at, task, initCred, new Map(), new NamespaceReader(mem, types.ns));
}
