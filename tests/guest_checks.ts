/**
 * Checks of a booted test guest against its own view of itself, shared by the guest tests: the
 * IDS's ps and lsmod against the guest's /proc, and every other view run over it without an
 * error. Each check asserts; the expected values come from the guest's console, never from the
 * IDS.
 *
 * @module
 */

import { assert, assertEquals, sameComm, stableAcross } from "./support/mod.ts";
import type { GuestSession, Mode } from "../ids/client/mod.ts";
import type { Module, Process } from "../ids/linux/mod.ts";
import { runCheck, scanSections, type SectionName, SOURCES } from "../ids/detect/mod.ts";
import { GUEST_PROCESSES, type GuestModule, type GuestVm } from "../guest/mod.ts";

/** The modes every check takes its snapshots in. */
const MODES: readonly Mode[] = ["prefetch", "on-demand"];

/** A module as the IDS and /proc/modules both describe it. */
export function comparableModule(m: Module | GuestModule) {
  return {
    name: m.name,
    size: m.size,
    state: m.state.toLowerCase(),
    refcount: m.refcount,
    base: m.base,
    taints: "taintFlags" in m ? m.taintFlags : m.taints,
  };
}

/**
 * ps in both modes against the guest's /proc, read before and after: every process stable
 * across both readings is listed with its pid, ppid, ids, kernel-thread flag and name; the known
 * processes and the agent are there; prefetch takes one round trip and misses nothing.
 */
export async function expectPsMatches(vm: GuestVm, session: GuestSession): Promise<void> {
  const before = await vm.processes();
  const prefetch = await session.processes("prefetch");
  const onDemand = await session.processes("on-demand");
  const after = await vm.processes();
  const stable = stableAcross(before, after);
  assert(stable.length > 30, `${stable.length} processes stable in the guest`);
  for (const { processes, stats } of [prefetch, onDemand]) {
    assert(!stats.truncated, `${stats.mode} was truncated: ${stats.reason}`);
    const listed = new Map<number, Process>(processes.map((p) => [p.pid, p]));
    for (const truth of stable) {
      const p = listed.get(truth.pid);
      assert(p, `${stats.mode}: pid ${truth.pid} (${truth.comm}) is in the guest's /proc only`);
      const { comm: _comm, ...rest } = truth;
      assertEquals(
        { pid: p.pid, ppid: p.ppid, uid: p.uid, euid: p.euid, gid: p.gid, kthread: p.kthread },
        rest,
        `${stats.mode}: pid ${truth.pid}`,
      );
      assert(sameComm(p.comm, truth), `${stats.mode}: pid ${truth.pid} is "${p.comm}"`);
    }
    for (const known of vm.knownProcesses) {
      const p = listed.get(known.pid);
      assertEquals([p?.comm, p?.uid], [known.name, known.uid], `${stats.mode}: ${known.name}`);
    }
    assertEquals(listed.get(vm.agentPid)?.comm, "deno", `${stats.mode}: the agent`);
    for (const p of processes) assertEquals(p.error, undefined, `pid ${p.pid}: ${p.error}`);
  }
  assertEquals(vm.knownProcesses.length, GUEST_PROCESSES.uids.length);
  assertEquals(prefetch.stats.roundTrips, 1);
  assertEquals(prefetch.stats.misses, 0);
}

/**
 * lsmod in both modes against the guest's /proc/modules: the same modules, in the same order,
 * with the same fields; prefetch takes one round trip and misses nothing.
 */
export async function expectLsmodMatches(vm: GuestVm, session: GuestSession): Promise<void> {
  const truth = await vm.modules();
  assert(truth.some((m) => m.name === "virtio_net"), "the guest loaded its modules");
  for (const mode of MODES) {
    const { answer, stats } = await session.modules(mode);
    assert(answer.supported, `${mode}: ${answer.reason}`);
    assert(!stats.truncated, `${mode} was truncated: ${stats.reason}`);
    assertEquals(answer.modules.map(comparableModule), truth.map(comparableModule), mode);
    for (const m of answer.modules) assertEquals(m.error, undefined, `${m.name}: ${m.error}`);
    if (mode === "prefetch") assertEquals([stats.roundTrips, stats.misses], [1, 0]);
    else assert(stats.roundTrips > truth.length, `${stats.roundTrips} round trips`);
  }
}

/**
 * Every other view in both modes, whole and without an error: each section of a scan (processes
 * by every view, sockets, BPF programs, modules by every view, kernel pointers, ftrace, the
 * agent's task), the sockets view (the agent's listening socket among them), the agent's open
 * files, and each process's threads (the agent has several). Returns what every rule found on
 * the clean guest, for the caller to look at.
 */
export async function expectViewsRun(vm: GuestVm, session: GuestSession): Promise<string[]> {
  const names = Object.keys(SOURCES) as SectionName[];
  for (const mode of MODES) {
    const { scan, stats } = await scanSections(session, mode, names);
    assert(!stats.truncated, `${mode} scan was truncated: ${stats.reason}`);
    assertEquals(Object.keys(scan.sections).sort(), [...names].sort());
    for (const [name, section] of Object.entries(scan.sections)) {
      assert(section.supported, `${mode} ${name}: ${!section.supported && section.reason}`);
      assert(!section.truncated, `${mode} ${name} was truncated: ${section.reason}`);
    }
    const { sockets, stats: socketStats } = await session.sockets(mode);
    assert(!socketStats.truncated, `${mode} sockets were truncated: ${socketStats.reason}`);
    const agentSocket = sockets.find((s) =>
      s.state === "LISTEN" && s.owners.some((o) => o.pid === vm.agentPid)
    );
    assert(agentSocket, `${mode}: the agent's listening socket among ${sockets.length}`);
    const { answer, stats: fileStats } = await session.files(vm.agentPid, mode);
    assert(!fileStats.truncated, `${mode} files were truncated: ${fileStats.reason}`);
    assert(answer.files.length > 3, `${mode}: the agent has ${answer.files.length} open files`);
    const { processes, stats: threadStats } = await session.processes(mode, undefined, {
      threads: true,
    });
    assert(!threadStats.truncated, `${mode} threads were truncated: ${threadStats.reason}`);
    const agent = processes.find((p) => p.pid === vm.agentPid);
    assert((agent?.threadList?.length ?? 0) > 1, `${mode}: the agent's threads`);
  }
  const { findings, stats } = await runCheck(session, "prefetch");
  assert(!stats.truncated, `the check was truncated: ${stats.reason}`);
  return findings.map((f) => `${f.rule} (${f.severity}) ${f.subject}: ${f.message}`);
}
