/**
 * The views beyond the process list against ground truth on the real kernel: the test's own
 * sockets and files in `ss` and `lsof`, credentials in `ps`, each checked against /proc, in all
 * three modes, which must agree.
 */

import {
  assert,
  assertEquals,
  expectedSocket,
  privilegedTest,
  procNet,
  socketFields,
  TestProcesses,
  TestSockets,
} from "./support/mod.ts";
import { spawnAgent } from "../agent/mod.ts";
import { MODES, openSession } from "../ids/client/mod.ts";
import type { Socket } from "../ids/linux/mod.ts";

/** /proc/self/fd: fd → readlink target. */
function ownFds(): Map<number, string> {
  const fds = new Map<number, string>();
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    try {
      fds.set(Number(entry.name), Deno.readLinkSync(`/proc/self/fd/${entry.name}`));
    } catch {
      // closed meanwhile
    }
  }
  return fds;
}

privilegedTest("ss, lsof and ps credentials agree with /proc in every mode", async () => {
  const state = await Deno.makeTempDir({ prefix: "ebpfmon-views-" });
  await using agent = await spawnAgent({ stateDir: state });
  await using children = await TestProcesses.start("ebpfmon-cred-", [65534, 0]);

  using held = await TestSockets.open();
  const dir = await Deno.makeTempDir({ prefix: "ebpfmon-lsof-" });
  const path = `${dir}/nested/witness.txt`;
  await Deno.mkdir(`${dir}/nested`);
  const file = await Deno.open(path, { create: true, write: true });
  try {
    using session = await openSession({ agent: agent.address, state });
    const before = ownFds();
    const snapshots = [];
    for (const mode of MODES) {
      const { sockets, stats } = await session.sockets(mode);
      assert(!stats.truncated, `${mode} ss truncated: ${stats.reason}`);
      const { answer: files, stats: fileStats } = await session.files(Deno.pid, mode);
      assert(!fileStats.truncated, `${mode} lsof truncated: ${fileStats.reason}`);
      const { processes } = await session.processes(mode);
      // A walk that completed copied everything its view reads (one that ran out of room in
      // the ring, as on a machine with very many tasks, says so and is completed on demand).
      if (stats.prefetch?.stop === "complete") {
        assertEquals(stats.misses, 0, `${mode} ss read past its plan`);
      }
      if (fileStats.prefetch?.stop === "complete") {
        assertEquals(fileStats.misses, 0, `${mode} lsof read past its plan`);
      }
      snapshots.push({ mode, sockets, files: files.files, processes });
    }
    const after = ownFds();
    const net = procNet();
    const stableFds = [...before].filter(([fd, target]) => after.get(fd) === target);

    // The test's own sockets: each fd that /proc calls a socket of ours, with /proc/net's view.
    const ownSockets = stableFds.flatMap(([fd, target]) => {
      const inode = Number(/^socket:\[(\d+)\]$/.exec(target)?.[1]);
      return net.has(inode) ? [{ fd, ...net.get(inode)! }] : [];
    });
    for (const port of held.ports) {
      assert(
        ownSockets.some((s) => s.localPort === port),
        `/proc shows our socket on port ${port}`,
      );
    }

    for (const { mode, sockets, files, processes } of snapshots) {
      const byInode = new Map<number, Socket>(sockets.map((s) => [s.inode, s]));
      for (const truth of ownSockets) {
        const s = byInode.get(truth.inode);
        assert(s, `${mode}: socket inode ${truth.inode} (port ${truth.localPort}) is missing`);
        assertEquals(
          socketFields(s),
          expectedSocket(truth),
          `${mode}: socket inode ${truth.inode}`,
        );
        assert(
          s.owners.some((o) => o.pid === Deno.pid && o.fd === truth.fd),
          `${mode}: socket inode ${truth.inode} lacks owner ${Deno.pid}/${truth.fd}`,
        );
      }
      const listening = sockets.find((s) =>
        s.localPort === held.listener.addr.port && s.state === "LISTEN"
      );
      assert(listening, `${mode}: our listener is listed as LISTEN`);

      const byFd = new Map(files.map((f) => [f.fd, f]));
      for (const [fd, target] of stableFds) {
        const f = byFd.get(fd);
        assert(f, `${mode}: fd ${fd} (${target}) is missing from lsof`);
        assertEquals(f.path, target, `${mode}: fd ${fd}`);
        assert(f.pathComplete, `${mode}: fd ${fd} path incomplete`);
      }
      assert(files.some((f) => f.path === path && f.type === "file"), `${mode}: ${path} listed`);

      for (const child of children.children) {
        const p = processes.find((p) => p.pid === child.process.pid);
        assert(p, `${mode}: child ${child.process.pid} listed`);
        const status = Deno.readTextFileSync(`/proc/${child.process.pid}/status`);
        const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, "m").exec(status)![1];
        assertEquals(
          [p.uid, p.euid, p.suid, p.fsuid].join(" "),
          field("Uid").split(/\s+/).join(" "),
        );
        assertEquals(
          [p.gid, p.egid, p.sgid, p.fsgid].join(" "),
          field("Gid").split(/\s+/).join(" "),
        );
        for (
          const [ours, theirs] of [["capEffective", "CapEff"], ["capPermitted", "CapPrm"], [
            "capInheritable",
            "CapInh",
          ]] as const
        ) {
          assertEquals(BigInt(p[ours]!), BigInt("0x" + field(theirs)), `${mode}: ${ours}`);
        }
      }
    }

    // All three modes give the same views of what did not change meanwhile.
    const ours = (sockets: Socket[]) =>
      sockets.filter((s) => ownSockets.some((o) => o.inode === s.inode))
        .map((s) => JSON.stringify({ ...s, sock: "" })).sort();
    const stable = (files: { fd: number }[]) =>
      files.filter((f) => stableFds.some(([fd]) => fd === f.fd)).map((f) => JSON.stringify(f))
        .sort();
    for (const s of snapshots.slice(1)) {
      assertEquals(ours(s.sockets), ours(snapshots[0].sockets), `${s.mode} ss`);
      assertEquals(stable(s.files), stable(snapshots[0].files), `${s.mode} lsof`);
    }
  } finally {
    file.close();
    await Deno.remove(dir, { recursive: true });
  }
});

privilegedTest(
  "lsmod says the module list is not supported on a kernel without modules",
  async () => {
    const state = await Deno.makeTempDir({ prefix: "ebpfmon-views-" });
    await using agent = await spawnAgent({ stateDir: state });
    using session = await openSession({ agent: agent.address, state });
    const hasModules = await Deno.stat("/proc/modules").then(() => true, () => false);
    for (const mode of MODES) {
      const { answer } = await session.modules(mode);
      assertEquals(answer.supported, hasModules);
      if (!hasModules) {
        assert(answer.reason?.includes("not supported by this kernel"), answer.reason);
        assertEquals(answer.modules, []);
      }
    }
  },
);
