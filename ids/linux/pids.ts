/**
 * Processes seen through three independent kernel structures, for finding what a rootkit hides:
 *
 * - `tasks`: init_task's task list (what `ps` in the guest ultimately reads, and what a rootkit
 *   unlinks a task from);
 * - `pid_idr`: the init pid namespace's pid IDR (`init_pid_ns.idr` -> `struct pid` ->
 *   `tasks[PIDTYPE_PID]` -> the task, whose `group_leader` is its process), which holds every
 *   thread of every pid namespace by its global pid;
 * - `children`: each task's `children` list from init_task down (the process tree).
 *
 * A process missing from a view is only a suspicion: the walks are not atomic, and a process
 * forks or exits between them. Each suspicion is re-checked against the live guest, on the
 * task's own structures: a process missing from the task list is hidden only when it is still
 * alive and its `tasks` links do not lead back to it (unlinked); from the children list, when
 * its `sibling` links do not; from the pid IDR, when looking up its pid (one read per level)
 * does not find its `struct pid` holding it. A fork that linked the task after the walk, or an
 * exit, clears the suspicion. Every walk is bounded and reports how it ended.
 *
 * This file holds what the views return, their plan and their comparison; the pid IDR and the
 * children lists are walked in `_pid_walks.ts`, and suspicions and shared creds are re-checked in
 * `_pid_recheck.ts`.
 *
 * @module
 */

import type { Btf } from "../btf/mod.ts";
import {
  type AddressSpace,
  BadPointer,
  type GuestMemory,
  type KAddr,
  type Pointer,
} from "../memory/mod.ts";
import {
  firstPtr,
  offsetOf,
  type PlanBuilder,
  planXarray,
  ptr,
  readStruct,
  resolveLayout,
  resolveXarrayTypes,
  sint,
  uint,
} from "../kernel/mod.ts";
import type { KernelTypes } from "./kernel_types.ts";
import {
  describeTask,
  listProcesses,
  type Process,
  type ProcessList,
  type ProcessViewName,
  type TaskNodes,
} from "./processes.ts";
import { idrLeaders, ScanTasks, treeTasks } from "./_pid_walks.ts";
import { confirmSharedCreds, MAX_CONFIRMS, recheck } from "./_pid_recheck.ts";
import { taskAddress, UNKNOWN_IDS } from "./_process_fields.ts";

export { confirmSharedCreds } from "./_pid_recheck.ts";

export const PROCESS_VIEWS: readonly ProcessViewName[] = ["tasks", "pid_idr", "children"];

/** Resolves `struct pid`, `struct upid` and the pid namespace's IDR. */
export function resolvePidTypes(btf: Btf) {
  return {
    /** `tasks` decodes to tasks[PIDTYPE_PID].first, the pid's task (its hlist's first node). */
    pid: resolveLayout(btf, "pid", { level: uint("level"), tasks: firstPtr("tasks") }),
    /** `numbers[0]`, the pid in the init namespace, is a `struct upid` at this offset. */
    numbersOffset: offsetOf(btf, "pid", "numbers"),
    upid: resolveLayout(btf, "upid", { nr: sint("nr"), ns: ptr("ns") }),
    pidns: resolveLayout(btf, "pid_namespace", { xaHead: ptr("idr.idr_rt.xa_head") }),
    listHead: resolveLayout(btf, "list_head", { next: ptr("next"), prev: ptr("prev") }),
    xarray: resolveXarrayTypes(btf),
  };
}

/** The resolved pid structures of one guest kernel. */
export type PidTypes = ReturnType<typeof resolvePidTypes>;

/** How one view's walk went. */
export interface ViewWalk {
  /** Processes it holds. */
  count: number;
  truncated: boolean;
  reason?: string;
}

/** A process missing from some view, confirmed against the live guest. */
export interface HiddenProcess {
  pid: number;
  comm: string;
  uid: number;
  euid: number;
  task: string;
  seenIn: ProcessViewName[];
  missingFrom: ProcessViewName[];
}

/** The `processes` section: every process any view holds, and what is hidden. */
export interface ProcessViews {
  /** The task list's processes in its order, then those only other views hold. */
  processes: Process[];
  hidden: HiddenProcess[];
  views: Record<ProcessViewName, ViewWalk>;
  /** Suspicions the live re-check cleared (a fork or exit during the scan). */
  cleared: number;
  /** Suspicions past the re-check limit, not confirmed and not raised. */
  unconfirmed: number;
  /** Suspicions re-checked against the live guest. */
  confirmed: number;
  /**
   * The creds (addresses) that processes of more than one thread group hold, as the live guest
   * still shows them ({@linkcode confirmSharedCreds}).
   */
  sharedCreds: string[];
  /** Creds that seemed shared in the snapshot and were not live (an exit, a reuse). */
  credsCleared: number;
  /** The init pid namespace. */
  pidNamespace: string;
  /** Whether the processes have cgroup paths, or why not (processes.ts). */
  cgroups?: ProcessList["cgroups"];
}

/** Bounds of the walks. */
export interface PidViewOptions {
  /** Most tasks per view. @default 1_000_000 */
  maxTasks?: number;
  /** The task list of this snapshot, when another view already read it. */
  list?: ProcessList;
  /**
   * How long to wait before the second re-check of a task the first re-check still finds
   * missing from a view. @default {@linkcode SETTLE_MS}
   */
  settleMs?: number;
}

/**
 * A task still missing from a view when first re-checked is re-checked once more this much later:
 * a fork links its new task into the task list, its parent's children and its pid in one short
 * step, and a task caught inside it (its memory reused from one the scan saw) is linked by then.
 * A hidden task is still hidden.
 */
export const SETTLE_MS = 50;

/** The init pid namespace: init_task's pid's namespace (a few reads, once per session). */
export async function findInitPidNamespace(
  mem: GuestMemory,
  types: KernelTypes,
  pidTypes: PidTypes,
  initTask: KAddr,
): Promise<KAddr> {
  const task = await readStruct(mem, initTask, types.task);
  const pid = mem.space.follow(task.threadPid, "thread_pid of init_task", initTask);
  const upid = await readStruct(mem, pid + pidTypes.numbersOffset, pidTypes.upid);
  return mem.space.follow(upid.ns, "numbers[0].ns of init_task's pid", pid);
}

/**
 * Adds to `b` what {@linkcode readProcessViews} reads beyond the task list: every task's
 * children list, its group leader, and the pid IDR down to each pid's task.
 */
export function planProcessViews(
  b: PlanBuilder,
  types: KernelTypes,
  pidTypes: PidTypes,
  tasks: TaskNodes,
  pidNamespace: KAddr,
): void {
  b.list(tasks.root, types.childrenOffset, tasks.task, types.siblingOffset);
  b.list(tasks.task, types.childrenOffset, tasks.task, types.siblingOffset);
  // A child is on the children list of the thread that forked it: walk every thread's. A
  // thread (reached from its process or the pid IDR) is read for its links (and what a thread
  // list shows) only. One already copied as a process (every leader, reached first from the
  // task list) is not.
  const thread = tasks.thread();
  b.ptr(thread, "groupLeader", tasks.task);
  b.list(thread, types.childrenOffset, tasks.task, types.siblingOffset);
  const ns = b.node(pidTypes.pidns);
  b.root(pidNamespace, ns);
  // The IDR's pids are the tasks' own (their numbers[] and namespaces planned with them).
  planXarray(b, pidTypes.xarray, ns, "xaHead", tasks.pid);
  b.chain(tasks.pid, "tasks", thread, types.pidLinksOffset);
}

function asAddr(p: Pointer): KAddr | undefined {
  return p === null || p instanceof BadPointer ? undefined : p;
}

/** The tasks (their process's leaders) every view holds, then the suspicions re-checked. */
export async function readProcessViews(
  mem: GuestMemory,
  types: KernelTypes,
  pidTypes: PidTypes,
  initTask: KAddr,
  pidNamespace: KAddr,
  confirm: GuestMemory,
  options: PidViewOptions = {},
): Promise<ProcessViews> {
  const maxTasks = options.maxTasks ?? 1_000_000;
  const list = options.list ?? await listProcesses(mem, types, initTask, { maxTasks });
  const listed = list.processes.map((p) => taskAddress(p, mem.space)!);
  const onList = new Set(listed);
  const views: Record<ProcessViewName, ViewWalk> = {
    tasks: { count: onList.size, truncated: list.truncated, reason: list.reason },
    pid_idr: { count: 0, truncated: false },
    children: { count: 0, truncated: false },
  };
  const headAt = pidNamespace + pidTypes.pidns.fields[0].offset;
  const task = new ScanTasks(mem, types.taskLinks);
  const inIdr = await idrLeaders(mem, task, types, pidTypes, headAt, maxTasks, views.pid_idr);
  const inTree = await treeTasks(mem, task, types, initTask, maxTasks, views.children);
  const all = [...onList, ...[...inIdr, ...inTree].filter((t) => !onList.has(t))];
  const known = new Set<KAddr>();
  const processes = list.processes.slice();
  const initCred = asAddr((await readStruct(mem, initTask, types.task)).realCred);
  const hidden: HiddenProcess[] = [];
  const out = { cleared: 0, unconfirmed: 0, confirmed: 0 };
  const byTask = new Map(listed.map((at, i) => [at, processes[i]]));
  // The views that hold a task, and those it is missing from, by which hold it: one array each.
  const seenInOf = viewSets(() => true);
  const missingOf = viewSets((v) => !views[v].truncated, true);
  for (const at of all) {
    if (known.has(at) || at === initTask) continue;
    known.add(at);
    const held = (onList.has(at) ? 1 : 0) | (inIdr.has(at) ? 2 : 0) | (inTree.has(at) ? 4 : 0);
    const seenIn = seenInOf[held];
    let process = byTask.get(at);
    if (!process) {
      process = await describeTask(mem, types, at, initCred).catch((error) => ({
        ...unreadable(at, mem.space),
        error: (error as Error).message,
      }));
      processes.push(process);
    }
    process.seenIn = seenIn;
    // A view whose walk did not finish cannot say a process is missing from it.
    const missing = missingOf[held];
    if (!missing.length) continue;
    if (out.confirmed >= MAX_CONFIRMS) {
      out.unconfirmed++;
      continue;
    }
    out.confirmed++;
    const look = { at, was: process, seenIn };
    let still = await recheck(confirm, types, pidTypes, headAt, look, missing);
    if (still.length) {
      await new Promise((resolve) => setTimeout(resolve, options.settleMs ?? SETTLE_MS));
      const later = confirm.again?.() ?? confirm;
      still = await recheck(later, types, pidTypes, headAt, look, still);
    }
    if (!still.length) {
      out.cleared++;
      continue;
    }
    hidden.push({
      pid: process.pid,
      comm: process.comm,
      uid: process.uid,
      euid: process.euid,
      task: mem.space.hex(at),
      seenIn,
      missingFrom: still,
    });
  }
  const creds = await confirmSharedCreds(confirm, types, processes);
  return {
    processes,
    hidden,
    views,
    ...out,
    sharedCreds: creds.shared,
    credsCleared: creds.cleared,
    pidNamespace: mem.space.hex(pidNamespace),
    ...(list.cgroups ? { cgroups: list.cgroups } : {}),
  };
}

/**
 * For each set of views as a bit mask (bit i: PROCESS_VIEWS[i] holds the task), the views that
 * hold it and pass `keep` (or, with `absent`, those that do not hold it and pass `keep`).
 * Shared by every process of a scan: nothing changes them.
 */
function viewSets(
  keep: (view: ProcessViewName) => boolean,
  absent = false,
): readonly ProcessViewName[][] {
  return Array.from(
    { length: 1 << PROCESS_VIEWS.length },
    (_, mask) => PROCESS_VIEWS.filter((v, i) => ((mask >> i & 1) === 1) !== absent && keep(v)),
  );
}

function unreadable(at: KAddr, space: AddressSpace): Process {
  return {
    pid: -1,
    tgid: -1,
    ppid: -1,
    comm: "",
    state: "?",
    ...UNKNOWN_IDS,
    kthread: false,
    task: space.hex(at),
    cred: "",
  };
}
