/**
 * The two-sided comparisons of the IDS's views with /proc, on this machine
 * (tests/ground_truth_test.ts) and in the guest (tests/guest_test.ts): what the IDS lists was in
 * /proc, and what /proc holds is listed, with every field as /proc shows it. What changed during
 * a snapshot (a process that started or exited, a socket that opened or closed, a field that
 * moved) is excepted by a reading of /proc before the snapshot and one after.
 *
 * Expected values come from /proc and from the literal tables here, never from the code under
 * test.
 *
 * @module
 */

import {
  assert,
  assertEquals,
  expectedSocket,
  type ProcNetSocket,
  type ProcStatus,
  socketFields,
} from "./support/mod.ts";
import type { Module, OpenFile, Process, Socket } from "../ids/linux/mod.ts";
import type { GuestModule } from "../guest/mod.ts";

/** How many objects a comparison checked, each way. */
export interface Compared {
  /** Objects the IDS listed, each found in /proc before or after the snapshot. */
  listed: number;
  /** Objects /proc held before and after the snapshot, each found in the IDS's answer. */
  stable: number;
}

/** The same value in both readings, or undefined when it changed. */
export function steady<T>(a: T, b: T): T | undefined {
  return JSON.stringify(a, (_, v) => typeof v === "bigint" ? String(v) : v) ===
      JSON.stringify(b, (_, v) => typeof v === "bigint" ? String(v) : v)
    ? a
    : undefined;
}

/**
 * Processes: every pid listed was in /proc before or after, none twice; every process in both
 * readings (the same start time: not a reused pid) is listed, with its tgid and kthread flag,
 * and its ppid, comm, uids, gids, capability sets and state where they did not change.
 */
export function compareProcesses(
  mode: string,
  processes: readonly Process[],
  before: ReadonlyMap<number, ProcStatus>,
  after: ReadonlyMap<number, ProcStatus>,
): Compared {
  const pids = processes.map((p) => p.pid);
  assertEquals(new Set(pids).size, pids.length, `${mode}: a pid listed twice`);
  for (const p of processes) {
    assert(
      before.has(p.pid) || after.has(p.pid),
      `${mode}: pid ${p.pid} (${p.comm}) is no process`,
    );
  }
  const listed = new Map(processes.map((p) => [p.pid, p]));
  let stable = 0;
  for (const [pid, b] of before) {
    const a = after.get(pid);
    if (!a || a.start !== b.start) continue; // exited, or its pid reused
    const p = listed.get(pid);
    assert(p, `${mode}: pid ${pid} (${b.comm}) is in /proc before and after, not in ps`);
    const where = `${mode}: pid ${pid} (${b.comm})`;
    assertEquals([p.tgid, p.kthread], [b.tgid, b.kthread], where);
    const ppid = steady(b.ppid, a.ppid);
    if (ppid !== undefined) assertEquals(p.ppid, ppid, `${where}: ppid`);
    const comm = steady(b.comm, a.comm);
    // A kernel thread's /proc name may be longer than its task_struct comm (a worker's queue).
    if (comm !== undefined) {
      assert(
        b.kthread ? comm.startsWith(p.comm) && p.comm.length > 0 : p.comm === comm,
        `${where}: comm "${p.comm}", /proc says "${comm}"`,
      );
    }
    const uids = steady(b.uids, a.uids);
    if (uids !== undefined) assertEquals([p.uid, p.euid, p.suid, p.fsuid], uids, `${where}: uids`);
    const gids = steady(b.gids, a.gids);
    if (gids !== undefined) assertEquals([p.gid, p.egid, p.sgid, p.fsgid], gids, `${where}: gids`);
    const caps = steady(b.caps, a.caps);
    if (caps !== undefined) {
      assertEquals(
        [p.capEffective, p.capPermitted, p.capInheritable].map((c) => BigInt(c!)),
        [caps.CapEff, caps.CapPrm, caps.CapInh],
        `${where}: capabilities`,
      );
    }
    // A sleeper the snapshot caught awake reads R; anything else is what /proc said.
    const state = steady(b.state, a.state);
    if (state !== undefined && state !== "R" && p.state !== "R") {
      assertEquals(p.state, state, `${where}: state`);
    }
    stable++;
  }
  return { listed: processes.length, stable };
}

/**
 * Sockets: every socket with an inode in both readings of /proc/net, unchanged, is listed with
 * its addresses, ports and state; every socket listed with an inode in one of the network
 * namespaces `netNs` (those /proc/net was read in) was in /proc/net before or after.
 */
export function compareSockets(
  mode: string,
  sockets: readonly Socket[],
  before: ReadonlyMap<number, ProcNetSocket>,
  after: ReadonlyMap<number, ProcNetSocket>,
  netNs: ReadonlySet<number>,
): Compared {
  const byInode = new Map(sockets.filter((s) => s.inode).map((s) => [s.inode, s]));
  let stable = 0;
  for (const [inode, b] of before) {
    const truth = steady<ProcNetSocket | undefined>(b, after.get(inode));
    if (!truth) continue; // opened, closed or changed state meanwhile
    const s = byInode.get(inode);
    const where = `${mode}: ${truth.protocol} inode ${inode} port ${truth.localPort}`;
    assert(s, `${where} is in /proc/net before and after, not in ss`);
    assertEquals(socketFields(s), expectedSocket(truth), where);
    stable++;
  }
  let listed = 0;
  for (const s of sockets) {
    if (!s.inode || s.netNs === undefined || !netNs.has(s.netNs)) continue;
    assert(
      before.has(s.inode) || after.has(s.inode),
      `${mode}: ss lists ${s.protocol} inode ${s.inode} port ${s.localPort}, /proc/net never did`,
    );
    listed++;
  }
  return { listed, stable };
}

/**
 * Open files of one process (`where` names it): every fd of both readings of /proc/PID/fd, to
 * the same target, is listed, with readlink's path when `comparePaths` (the process sees the
 * reader's root) and the link could be read; every fd listed was in one reading or the other.
 */
export function compareFds(
  where: string,
  files: readonly OpenFile[],
  before: ReadonlyMap<number, string | null>,
  after: ReadonlyMap<number, string | null>,
  comparePaths: boolean,
): Compared {
  const listed = new Map(files.map((f) => [f.fd, f]));
  let stable = 0;
  for (const [fd, target] of before) {
    if (after.get(fd) !== target) continue; // closed or reopened meanwhile
    const f = listed.get(fd);
    assert(f, `${where}: fd ${fd} (${target}) is in /proc, not in lsof`);
    if (comparePaths && target !== null) assertEquals(f.path, target, `${where}: fd ${fd}`);
    stable++;
  }
  for (const f of files) {
    assert(
      before.has(f.fd) || after.has(f.fd),
      `${where}: lsof lists fd ${f.fd} (${f.path}), /proc never did`,
    );
  }
  return { listed: files.length, stable };
}

/** Module states: as /proc/modules prints them, as the IDS names them (enum module_state). */
const MODULE_STATES: Record<string, string> = {
  Live: "live",
  Loading: "coming",
  Unloading: "going",
};

/** A line of /proc/modules as the IDS should show it. */
function expectedModule(m: GuestModule) {
  return {
    name: m.name,
    size: m.size,
    state: MODULE_STATES[m.state],
    refcount: m.refcount,
    base: m.base,
    taints: m.taints,
    usedBy: m.usedBy.filter((name) => name !== "[permanent]"),
    permanent: m.usedBy.includes("[permanent]") || undefined,
  };
}

/** The same fields of a module the IDS lists. */
function moduleFields(m: Module): ReturnType<typeof expectedModule> {
  return {
    name: m.name,
    size: m.size,
    state: m.state,
    refcount: m.refcount,
    base: m.base,
    taints: m.taintFlags,
    usedBy: m.usedBy!,
    permanent: m.permanent,
  };
}

/**
 * Modules: every module listed was in /proc/modules before or after, none twice; every module in
 * both readings with the same line is listed, with its size, state, refcount, base, taints and
 * "used by" column, in the same order.
 */
export function compareModules(
  mode: string,
  modules: readonly Module[],
  before: readonly GuestModule[],
  after: readonly GuestModule[],
): Compared {
  const names = modules.map((m) => m.name);
  assertEquals(new Set(names).size, names.length, `${mode}: a module listed twice`);
  const known = new Set([...before, ...after].map((m) => m.name));
  for (const m of modules) assert(known.has(m.name), `${mode}: module ${m.name} is no module`);
  const later = new Map(after.map((m) => [m.name, m]));
  const stable = before.filter((m) => steady(m, later.get(m.name)) !== undefined);
  const listed = new Map(modules.map((m) => [m.name, m]));
  for (const truth of stable) {
    const m = listed.get(truth.name);
    assert(m, `${mode}: module ${truth.name} is in /proc/modules before and after, not in lsmod`);
    assertEquals(moduleFields(m), expectedModule(truth), `${mode}: module ${truth.name}`);
  }
  const order = new Set(stable.map((m) => m.name));
  assertEquals(names.filter((n) => order.has(n)), [...order], `${mode}: the modules' order`);
  return { listed: modules.length, stable: stable.length };
}
