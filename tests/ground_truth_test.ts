/**
 * Ground truth in both directions, in every mode, for every object of this machine (not only the
 * test's own): what the IDS lists exists, and what exists is listed, with every field as /proc
 * shows it.
 *
 * - processes: every pid listed was in /proc before or after the snapshot, none twice; every
 *   process stable across it is listed, with its pid, tgid, ppid, comm, state, eight uids and
 *   gids, kthread flag and capability sets as /proc/PID/status and /proc/PID/stat show them;
 * - sockets: every TCP and UDP socket of /proc/net/{tcp,tcp6,udp,udp6} (by inode) stable across
 *   the snapshot is in `ss` with its addresses, ports and state, and every socket `ss` lists in
 *   this network namespace with an inode was in /proc/net before or after;
 * - open files: for every process whose fds /proc shows, `lsof PID` lists every fd stable across
 *   the snapshot with readlink's path, and no fd /proc did not have before or after.
 *
 * Expected values come from /proc and from the literal tables here, never from the code under
 * test. What changed during a snapshot (a process that started or exited, a socket that opened or
 * closed, a field that moved) is excepted by reading /proc before and after.
 */

import { assert, assertEquals } from "./assert.ts";
import { privilegedTest } from "./privileged.ts";
import { expectedSocket, procNet, type ProcNetSocket, socketFields } from "./procfs.ts";
import { spawnAgent } from "../agent/mod.ts";
import { openSession } from "../ids/connect.ts";
import { MODES } from "../ids/session.ts";

const PF_KTHREAD = 0x0020_0000;

/** A process as /proc/PID/status, /proc/PID/stat and /proc/PID/comm show it. */
interface ProcStatus {
  pid: number;
  tgid: number;
  ppid: number;
  comm: string;
  state: string;
  uids: string;
  gids: string;
  caps: { CapEff: bigint; CapPrm: bigint; CapInh: bigint };
  kthread: boolean;
  /** Clock ticks from boot to its start (stat field 22): what tells it from a later one. */
  start: number;
}

function readStatus(pid: number): ProcStatus | undefined {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, "m").exec(status)![1];
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return {
      pid,
      tgid: Number(field("Tgid")),
      ppid: Number(field("PPid")),
      comm: Deno.readTextFileSync(`/proc/${pid}/comm`).replace(/\n$/, ""),
      state: rest[0],
      uids: field("Uid").split(/\s+/).join(" "),
      gids: field("Gid").split(/\s+/).join(" "),
      caps: {
        CapEff: BigInt("0x" + field("CapEff")),
        CapPrm: BigInt("0x" + field("CapPrm")),
        CapInh: BigInt("0x" + field("CapInh")),
      },
      kthread: (Number(rest[6]) & PF_KTHREAD) !== 0,
      start: Number(rest[19]),
    };
  } catch {
    return undefined; // it exited meanwhile
  }
}

function readAll(): Map<number, ProcStatus> {
  const out = new Map<number, ProcStatus>();
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    const s = readStatus(Number(e.name));
    if (s) out.set(s.pid, s);
  }
  return out;
}

/**
 * A process's fds as /proc/PID/fd shows them (fd → readlink; null where the link cannot be read,
 * as a process of another user namespace's is not), or undefined when the directory cannot be.
 */
function readFds(pid: number): Map<number, string | null> | undefined {
  try {
    const fds = new Map<number, string | null>();
    for (const e of Deno.readDirSync(`/proc/${pid}/fd`)) {
      try {
        fds.set(Number(e.name), Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`));
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) fds.set(Number(e.name), null);
      }
    }
    return fds;
  } catch {
    return undefined;
  }
}

/** The same field in both readings, or undefined when it changed. */
function steady<T>(a: T, b: T): T | undefined {
  return JSON.stringify(a, (_, v) => typeof v === "bigint" ? String(v) : v) ===
      JSON.stringify(b, (_, v) => typeof v === "bigint" ? String(v) : v)
    ? a
    : undefined;
}

privilegedTest("ps lists what /proc lists, no more, with every field, in every mode", async () => {
  const state = await Deno.makeTempDir({ prefix: "ebpfmon-truth-" });
  await using agent = await spawnAgent({ stateDir: state });
  using session = await openSession({ agent: agent.address, state });
  for (const mode of MODES) {
    const before = readAll();
    const { processes, stats } = await session.processes(mode);
    const after = readAll();
    assert(!stats.truncated, `${mode}: truncated: ${stats.reason}`);
    const pids = processes.map((p) => p.pid);
    assertEquals(new Set(pids).size, pids.length, `${mode}: a pid listed twice`);
    for (const p of processes) {
      assert(
        before.has(p.pid) || after.has(p.pid),
        `${mode}: pid ${p.pid} (${p.comm}) is no process`,
      );
    }
    const listed = new Map(processes.map((p) => [p.pid, p]));
    let compared = 0;
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
      if (uids !== undefined) assertEquals(`${p.uid} ${p.euid} ${p.suid} ${p.fsuid}`, uids, where);
      const gids = steady(b.gids, a.gids);
      if (gids !== undefined) assertEquals(`${p.gid} ${p.egid} ${p.sgid} ${p.fsgid}`, gids, where);
      const caps = steady(b.caps, a.caps);
      if (caps !== undefined) {
        assertEquals(
          [p.capEffective, p.capPermitted, p.capInheritable].map((c) => BigInt(c!)),
          [caps.CapEff, caps.CapPrm, caps.CapInh],
          `${where}: capabilities`,
        );
      }
      // A sleeper the snapshot caught awake reads R; anything else is what /proc said.
      const s = steady(b.state, a.state);
      if (s !== undefined && s !== "R" && p.state !== "R") {
        assertEquals(p.state, s, `${where}: state`);
      }
      compared++;
    }
    assert(compared >= 10, `${mode}: only ${compared} processes compared`);
  }
});

privilegedTest("ss lists what /proc/net lists, no more, in every mode", async () => {
  const state = await Deno.makeTempDir({ prefix: "ebpfmon-truth-" });
  await using agent = await spawnAgent({ stateDir: state });
  using session = await openSession({ agent: agent.address, state });
  const ownNetNs = Number(/\[(\d+)\]/.exec(Deno.readLinkSync("/proc/self/ns/net"))![1]);
  // At least one socket of each kind, whatever else the machine has.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const listener6 = Deno.listen({ hostname: "::1", port: 0 });
  const client = await Deno.connect({
    hostname: "127.0.0.1",
    port: (listener.addr as Deno.NetAddr).port,
  });
  const server = await listener.accept();
  try {
    for (const mode of MODES) {
      const before = procNet();
      const { sockets, stats } = await session.sockets(mode);
      const after = procNet();
      assert(!stats.truncated, `${mode}: truncated: ${stats.reason}`);
      const byInode = new Map(sockets.filter((s) => s.inode).map((s) => [s.inode, s]));
      let compared = 0;
      for (const [inode, b] of before) {
        const truth = steady<ProcNetSocket | undefined>(b, after.get(inode));
        if (!truth) continue; // opened, closed or changed state meanwhile
        const s = byInode.get(inode);
        const where = `${mode}: ${truth.protocol} inode ${inode} port ${truth.localPort}`;
        assert(s, `${where} is in /proc/net before and after, not in ss`);
        assertEquals(socketFields(s), expectedSocket(truth), where);
        compared++;
      }
      assert(compared >= 4, `${mode}: only ${compared} sockets compared`);
      for (const s of sockets) {
        if (!s.inode || s.netNs !== ownNetNs) continue;
        assert(
          before.has(s.inode) || after.has(s.inode),
          `${mode}: ss lists ${s.protocol} inode ${s.inode} port ${s.localPort}, /proc/net never did`,
        );
      }
    }
  } finally {
    client.close();
    server.close();
    listener.close();
    listener6.close();
  }
});

privilegedTest(
  "lsof lists what /proc/PID/fd lists, no more, for every process, in every mode",
  async () => {
    const state = await Deno.makeTempDir({ prefix: "ebpfmon-truth-" });
    await using agent = await spawnAgent({ stateDir: state });
    using session = await openSession({ agent: agent.address, state });
    const ownMnt = Deno.readLinkSync("/proc/self/ns/mnt");
    // An open file whose name was unlinked: readlink says "(deleted)", and so must lsof.
    const unlinked = `${state}/unlinked.txt`;
    using _file = await Deno.open(unlinked, { create: true, write: true });
    await Deno.remove(unlinked);
    assert(
      [...readFds(Deno.pid)!.values()].includes(`${unlinked} (deleted)`),
      "/proc shows the unlinked file as deleted",
    );
    for (const mode of MODES) {
      let processes = 0;
      for (const e of Deno.readDirSync("/proc")) {
        if (!/^\d+$/.test(e.name)) continue;
        const pid = Number(e.name);
        const before = readFds(pid);
        if (!before) continue;
        let answer;
        try {
          answer = (await session.files(pid, mode)).answer;
        } catch (error) {
          if ((error as Error).name === "NoSuchProcessError" && !readFds(pid)) continue; // exited
          throw error;
        }
        const after = readFds(pid);
        if (!after) continue;
        // Paths are the process's own: compared where its root is ours (one mount namespace).
        let sameRoot = false;
        try {
          sameRoot = Deno.readLinkSync(`/proc/${pid}/ns/mnt`) === ownMnt;
        } catch {
          // exited
        }
        const listed = new Map(answer.files.map((f) => [f.fd, f]));
        for (const [fd, target] of before) {
          if (after.get(fd) !== target) continue; // closed or reopened meanwhile
          const f = listed.get(fd);
          assert(f, `${mode}: fd ${fd} (${target}) of pid ${pid} is in /proc, not in lsof`);
          if (sameRoot && target !== null) {
            assertEquals(f.path, target, `${mode}: fd ${fd} of pid ${pid}`);
          }
        }
        for (const f of answer.files) {
          assert(
            before.has(f.fd) || after.has(f.fd),
            `${mode}: lsof lists fd ${f.fd} (${f.path}) of pid ${pid}, /proc never did`,
          );
        }
        processes++;
      }
      assert(processes >= 10, `${mode}: only ${processes} processes compared`);
    }
  },
);
