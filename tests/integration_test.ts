/**
 * The real agent on loopback, the real IDS, the real kernel: the process list in both modes
 * against /proc.
 */

import {
  assert,
  assertEquals,
  privilegedTest,
  readProc,
  sameComm,
  stableAcross,
  TestProcesses,
} from "./support/mod.ts";
import { Agent, spawnAgent } from "../agent/mod.ts";
import { openSession } from "../ids/client/mod.ts";
import type { Process } from "../ids/linux/mod.ts";

const NOBODY = 65534;

function byPid(list: Process[]): Map<number, Process> {
  return new Map(list.map((p) => [p.pid, p]));
}

privilegedTest("ps in every mode lists the test's processes and agrees with /proc", async () => {
  const state = await Deno.makeTempDir({ prefix: "ebpfmon-state-" });
  await using agent = await spawnAgent({ stateDir: state });
  await using children = await TestProcesses.start("ebpfmon-it-", [NOBODY, NOBODY, 0]);
  using session = await openSession({ agent: agent.address, state });

  const before = readProc();
  const prefetch = await session.processes("prefetch");
  const selective = await session.processes("selective");
  const onDemand = await session.processes("on-demand");
  const after = readProc();

  for (const { processes, stats } of [prefetch, selective, onDemand]) {
    assert(!stats.truncated, `${stats.mode} walk was truncated: ${stats.reason}`);
    const listed = byPid(processes);
    for (const child of children.children) {
      const p = listed.get(child.process.pid);
      assert(p, `${stats.mode}: test process ${child.name} (pid ${child.process.pid}) is missing`);
      assertEquals(
        { pid: p.pid, ppid: p.ppid, comm: p.comm, uid: p.uid, euid: p.euid, gid: p.gid },
        {
          pid: child.process.pid,
          ppid: Deno.pid,
          comm: child.name,
          uid: child.uid,
          euid: child.uid,
          gid: child.uid,
        },
      );
      assertEquals(p.kthread, false);
      assertEquals(p.state, "S");
    }
    const agentEntry = listed.get(agent.pid);
    assert(agentEntry, `${stats.mode}: the agent itself is missing`);
    for (const truth of stableAcross(before, after)) {
      const p = listed.get(truth.pid);
      assert(p, `${stats.mode}: pid ${truth.pid} (${truth.comm}) is alive in /proc but not listed`);
      const { comm, ...rest } = truth;
      assertEquals(
        { pid: p.pid, ppid: p.ppid, uid: p.uid, euid: p.euid, gid: p.gid, kthread: p.kthread },
        rest,
        `${stats.mode}: pid ${truth.pid} differs from /proc`,
      );
      assert(
        sameComm(p.comm, truth),
        `${stats.mode}: pid ${truth.pid} is "${p.comm}", /proc says "${comm}"`,
      );
    }
    for (const p of processes) assertEquals(p.error, undefined, `pid ${p.pid}: ${p.error}`);
  }

  const stable = new Set(stableAcross(before, after).map((p) => p.pid));
  const pick = (list: Process[]) =>
    list.filter((p) => stable.has(p.pid)).map((p) => JSON.stringify({ ...p, state: "" })).sort();
  assertEquals(pick(prefetch.processes), pick(onDemand.processes), "prefetch = on-demand");
  assertEquals(pick(selective.processes), pick(onDemand.processes), "selective = on-demand");

  for (const batched of [prefetch, selective]) {
    assertEquals(batched.stats.prefetch?.stop, "complete");
    assertEquals(batched.stats.misses, 0, `${batched.stats.mode} read past its plan`);
    assertEquals(batched.stats.roundTrips, 1);
    assert(
      onDemand.stats.roundTrips > batched.stats.roundTrips * 10,
      `on-demand made ${onDemand.stats.roundTrips} round trips, ${batched.stats.mode} 1`,
    );
  }
  assert(
    selective.stats.bytes <= prefetch.stats.bytes / 4,
    `selective received ${selective.stats.bytes} bytes, whole-object ${prefetch.stats.bytes}`,
  );
});

privilegedTest(
  "a prefetch cut short by its object limit is reported and completed on demand",
  async () => {
    const state = await Deno.makeTempDir({ prefix: "ebpfmon-state-" });
    await using agent = await spawnAgent({ stateDir: state });
    using session = await openSession({ agent: agent.address, state });
    const full = await session.processes("prefetch");
    const cut = await session.processes("prefetch", { maxObjects: 10, maxBytes: 1 << 20 });
    assertEquals(cut.stats.prefetch?.stop, "max-objects");
    assertEquals(cut.stats.prefetch?.objects, 10);
    assert(cut.stats.misses > 0, "the rest is read on demand");
    assert(!cut.stats.truncated, "the view itself completes");
    const pids = (list: Process[]) => new Set(list.map((p) => p.pid));
    const common = [...pids(full.processes)].filter((pid) => pids(cut.processes).has(pid));
    assert(common.length >= full.processes.length - 5, "both walks see the same processes");
  },
);

privilegedTest(
  "a process list many times the agent's ring arrives whole in one round trip",
  async () => {
    const state = await Deno.makeTempDir({ prefix: "ebpfmon-state-" });
    const ringBytes = 32 << 10;
    await using agent = await Agent.start({ port: 0, stateDir: state, ringBytes, log: () => {} });
    using session = await openSession({ agent: `127.0.0.1:${agent.port}`, state });
    const before = readProc();
    const prefetch = await session.processes("prefetch");
    const onDemand = await session.processes("on-demand");
    const after = readProc();
    assertEquals(prefetch.stats.prefetch?.stop, "complete");
    assertEquals([prefetch.stats.roundTrips, prefetch.stats.misses], [1, 0]);
    assert(
      prefetch.stats.prefetch!.bytes > 4 * ringBytes,
      `${prefetch.stats.prefetch!.bytes} bytes walked`,
    );
    const stable = new Set(stableAcross(before, after).map((p) => p.pid));
    const pick = (list: Process[]) =>
      list.filter((p) => stable.has(p.pid)).map((p) => JSON.stringify({ ...p, state: "" })).sort();
    assertEquals(pick(prefetch.processes), pick(onDemand.processes), "prefetch = on-demand");
    assert(stable.has(Deno.pid) && pick(prefetch.processes).length === stable.size);
  },
);
