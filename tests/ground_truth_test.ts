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

import {
  assert,
  privilegedTest,
  procNet,
  readFds,
  readProcStatuses,
  TestSockets,
} from "./support/mod.ts";
import { compareFds, compareProcesses, compareSockets } from "./truth.ts";
import { spawnAgent } from "../agent/mod.ts";
import { MODES, openSession } from "../ids/client/mod.ts";

privilegedTest("ps lists what /proc lists, no more, with every field, in every mode", async () => {
  const state = await Deno.makeTempDir({ prefix: "ebpfmon-truth-" });
  await using agent = await spawnAgent({ stateDir: state });
  using session = await openSession({ agent: agent.address, state });
  for (const mode of MODES) {
    const before = readProcStatuses();
    const { processes, stats } = await session.processes(mode);
    const after = readProcStatuses();
    assert(!stats.truncated, `${mode}: truncated: ${stats.reason}`);
    const { listed, stable: compared } = compareProcesses(mode, processes, before, after);
    assert(compared >= 10, `${mode}: only ${compared} processes compared`);
    console.log(`this machine, ${mode}: processes IDS->/proc ${listed}, /proc->IDS ${compared}`);
  }
});

privilegedTest("ss lists what /proc/net lists, no more, in every mode", async () => {
  const state = await Deno.makeTempDir({ prefix: "ebpfmon-truth-" });
  await using agent = await spawnAgent({ stateDir: state });
  using session = await openSession({ agent: agent.address, state });
  const ownNetNs = Number(/\[(\d+)\]/.exec(Deno.readLinkSync("/proc/self/ns/net"))![1]);
  // At least one socket of each kind, whatever else the machine has.
  using _held = await TestSockets.open();
  for (const mode of MODES) {
    const before = procNet();
    const { sockets, stats } = await session.sockets(mode);
    const after = procNet();
    assert(!stats.truncated, `${mode}: truncated: ${stats.reason}`);
    const { listed, stable } = compareSockets(
      mode,
      sockets,
      before,
      after,
      new Set([ownNetNs]),
    );
    assert(stable >= 4, `${mode}: only ${stable} sockets compared`);
    console.log(`this machine, ${mode}: sockets IDS->/proc ${listed}, /proc->IDS ${stable}`);
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
      const fds = { listed: 0, stable: 0 };
      for (const e of Deno.readDirSync("/proc")) {
        if (!/^\d+$/.test(e.name)) continue;
        const pid = Number(e.name);
        // A file opened and closed between the two reads of /proc (pid 1 here opens and closes
        // /proc directories all the time) is in neither, but may be in the snapshot: the
        // process is compared again. A file the IDS makes up is there every time.
        let compared;
        for (let attempt = 1; !compared; attempt++) {
          const before = readFds(pid);
          if (!before) break;
          let answer;
          try {
            answer = (await session.files(pid, mode)).answer;
          } catch (error) {
            if ((error as Error).name === "NoSuchProcessError" && !readFds(pid)) break; // exited
            throw error;
          }
          const after = readFds(pid);
          if (!after) break;
          // Paths are the process's own: compared where its root is ours (one mount namespace).
          let sameRoot = false;
          try {
            sameRoot = Deno.readLinkSync(`/proc/${pid}/ns/mnt`) === ownMnt;
          } catch {
            // exited
          }
          try {
            compared = compareFds(`${mode}: pid ${pid}`, answer.files, before, after, sameRoot);
          } catch (error) {
            if (attempt >= 3 || !(error as Error).message.includes("/proc never did")) throw error;
          }
        }
        if (!compared) continue;
        fds.listed += compared.listed;
        fds.stable += compared.stable;
        processes++;
      }
      assert(processes >= 10, `${mode}: only ${processes} processes compared`);
      console.log(
        `this machine, ${mode}: fds of ${processes} processes IDS->/proc ${fds.listed}, ` +
          `/proc->IDS ${fds.stable}`,
      );
    }
  },
);
