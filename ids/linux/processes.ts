/**
 * The process list, rebuilt from guest kernel memory: init_task's `tasks` list, one entry per
 * thread-group leader, as `ps` shows processes.
 *
 * The walk is bounded, detects cycles and reports how it ended; guest memory is hostile. A
 * process whose own fields cannot be read is listed with an error; a broken list link ends the
 * walk, reported as truncated with the reason.
 *
 * @module
 */

import { type AddressSpace, follow, type GuestMemory, type KAddr } from "../memory/mod.ts";
import {
  type Fields,
  hexOf,
  type NodeRef,
  peekStruct,
  type PlanBuilder,
  readStruct,
} from "../kernel/mod.ts";
import type { KernelTypes } from "./kernel_types.ts";
import { type CgroupSupport, type NamespaceFields, NamespaceReader } from "./namespaces.ts";
import { namespaceTaskRanges, planNamespaces } from "./namespace_plan.ts";
import { MAX_THREADS, type Thread } from "./threads.ts";

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

const PF_KTHREAD = 0x0020_0000;
const TASK_REPORT = 0x7f;
const TASK_REPORT_IDLE = 0x80;
const TASK_IDLE = 0x0402; // TASK_UNINTERRUPTIBLE | TASK_NOLOAD
const STATE_LETTERS = "RSDTtXZPI";

/** The `ps` letter of a task, as fs/proc/array.c derives it from __state and exit_state. */
export function stateLetter(state: number, exitState: number): string {
  let report = (state | exitState) & TASK_REPORT;
  if (state === TASK_IDLE) report = TASK_REPORT_IDLE;
  const index = report === 0 ? 0 : 32 - Math.clz32(report);
  return STATE_LETTERS[index] ?? "?";
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

type Task = Fields<KernelTypes["task"]>;

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

/** The process of `task` with only its own fields filled in; its parent and cred follow. */
function processOf(
  task: Task,
  at: KAddr,
  initCred: KAddr | undefined,
  space: AddressSpace,
): Process {
  const p: Process = {
    pid: task.pid,
    tgid: task.tgid,
    ppid: -1,
    comm: task.comm,
    state: stateLetter(task.state, task.exitState),
    uid: -1,
    euid: -1,
    suid: -1,
    fsuid: -1,
    gid: -1,
    egid: -1,
    sgid: -1,
    fsgid: -1,
    kthread: (task.flags & PF_KTHREAD) !== 0,
    startTime: task.startTime,
    execId: task.selfExecId,
    task: space.hex(at),
    cred: "",
  };
  const commHex = hexOf("commHex", task.comm).commHex;
  if (commHex !== undefined) p.commHex = commHex;
  if (initCred !== undefined) p.initCred = task.realCred === initCred;
  return p;
}

type Cred = Fields<KernelTypes["cred"]>;

function setCred(p: Process, at: KAddr, c: Cred, space: AddressSpace): Process {
  p.cred = space.hex(at);
  p.uid = c.uid;
  p.euid = c.euid;
  p.suid = c.suid;
  p.fsuid = c.fsuid;
  p.gid = c.gid;
  p.egid = c.egid;
  p.sgid = c.sgid;
  p.fsgid = c.fsgid;
  p.capEffective = c.capEffective;
  p.capPermitted = c.capPermitted;
  p.capInheritable = c.capInheritable;
  return p;
}

/**
 * {@linkcode describe} without I/O: undefined unless the parent's tgid and the cred are at
 * hand (as they are after a prefetch), so that a prefetched list costs no await per process.
 */
function describeCached(
  mem: GuestMemory,
  types: KernelTypes,
  at: KAddr,
  task: Task,
  initCred: KAddr | undefined,
  tgids: Map<KAddr, number>,
  ns: NamespaceReader,
): Process | undefined {
  if (typeof task.realParent !== "number" || typeof task.realCred !== "number") return undefined;
  if (typeof task.signal !== "number") return undefined;
  const ppid = tgids.get(task.realParent) ??
    peekStruct(mem, task.realParent, types.task)?.tgid;
  const cred = peekStruct(mem, task.realCred, types.cred);
  const signal = peekStruct(mem, task.signal, types.signal);
  if (ppid === undefined || cred === undefined || signal === undefined) return undefined;
  const fields = ns.peek(task, at);
  if (fields === undefined) return undefined;
  const p = processOf(task, at, initCred, mem.space);
  p.ppid = ppid;
  p.threads = signal.nrThreads;
  setNamespaces(p, fields);
  return setCred(p, task.realCred, cred, mem.space);
}

function setNamespaces(p: Process, fields: NamespaceFields): void {
  if (fields.pidNs !== undefined) p.pidNs = fields.pidNs;
  if (fields.nsPid !== undefined) p.nsPid = fields.nsPid;
  if (fields.netNs !== undefined) p.netNs = fields.netNs;
  if (fields.cgroup !== undefined) {
    p.cgroup = fields.cgroup;
    const cgroupHex = hexOf("cgroupHex", fields.cgroup).cgroupHex;
    if (cgroupHex !== undefined) p.cgroupHex = cgroupHex;
  }
  if (fields.errors) p.error = [p.error, ...fields.errors].filter(Boolean).join("; ");
}

async function describe(
  mem: GuestMemory,
  types: KernelTypes,
  at: KAddr,
  task: Task,
  initCred: KAddr | undefined,
  tgids: Map<KAddr, number>,
  ns: NamespaceReader,
): Promise<Process> {
  const p = processOf(task, at, initCred, mem.space);
  const problems: string[] = [];
  // The fields in the order describeCached() sets them, so that both give the same objects.
  try {
    const parent = follow(task.realParent, "real_parent");
    p.ppid = tgids.get(parent) ?? (await readStruct(mem, parent, types.task)).tgid;
  } catch (error) {
    problems.push((error as Error).message);
  }
  try {
    // init_task's own and a task being freed have none.
    if (task.signal !== null) {
      const signal = follow(task.signal, "signal");
      p.threads = (await readStruct(mem, signal, types.signal)).nrThreads;
    }
  } catch (error) {
    problems.push((error as Error).message);
  }
  setNamespaces(p, await ns.read(task, at));
  try {
    const cred = follow(task.realCred, "real_cred");
    p.cred = mem.space.hex(cred);
    setCred(p, cred, await readStruct(mem, cred, types.cred), mem.space);
  } catch (error) {
    problems.push((error as Error).message);
  }
  if (problems.length) p.error = [...problems, p.error].filter(Boolean).join("; ");
  return p;
}
