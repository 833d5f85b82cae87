/**
 * One task's fields as a {@linkcode Process}: its own (pid, comm, state, flags), its parent's
 * tgid, its thread count, its credentials, namespaces and cgroup. {@linkcode describeCached}
 * answers from the memory at hand without an await (a prefetched snapshot: a list costs no await
 * per process); {@linkcode describe} reads what is missing, and gives the same object. The `ps`
 * state letter, which the threads share, is here too.
 *
 * @module
 */

import { type AddressSpace, follow, type GuestMemory, type KAddr } from "../memory/mod.ts";
import { type Fields, hexOf, peekStruct, readStruct } from "../kernel/mod.ts";
import type { KernelTypes } from "./kernel_types.ts";
import type { NamespaceFields, NamespaceReader } from "./namespaces.ts";
import type { Process } from "./processes.ts";

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

type Task = Fields<KernelTypes["task"]>;

/** A process's uids and gids before its cred is read, or when it cannot be. */
export const UNKNOWN_IDS = {
  uid: -1,
  euid: -1,
  suid: -1,
  fsuid: -1,
  gid: -1,
  egid: -1,
  sgid: -1,
  fsgid: -1,
} as const;

/** The task_struct of each process described in this file, so as not to parse its `task` back. */
const taskAddresses = new WeakMap<Process, KAddr>();

/** The address of the task_struct of `p` (its `task`), or undefined when that is no address. */
export function taskAddress(p: Process, space: AddressSpace): KAddr | undefined {
  return taskAddresses.get(p) ?? space.parseKAddr(p.task);
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
    ...UNKNOWN_IDS,
    kthread: (task.flags & PF_KTHREAD) !== 0,
    startTime: task.startTime,
    execId: task.selfExecId,
    task: space.hex(at),
    cred: "",
  };
  const commHex = hexOf("commHex", task.comm).commHex;
  if (commHex !== undefined) p.commHex = commHex;
  if (initCred !== undefined) p.initCred = task.realCred === initCred;
  taskAddresses.set(p, at);
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
export function describeCached(
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

/**
 * The process of the task at `at`, whose fields are `task`: its parent's tgid, thread count,
 * namespaces and cred read as needed. Never throws: what cannot be read is in its `error`.
 */
export async function describe(
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
