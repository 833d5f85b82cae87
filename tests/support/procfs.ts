/**
 * Ground truth for the tests: what this machine's /proc says about its processes, sockets and
 * open files (the text parsed as the guest's is: guest/proc_text.ts), and test processes with
 * distinctive names and a chosen uid.
 *
 * @module
 */

import {
  type GuestProcess,
  parseProcNet,
  parseProcStatus,
  PROC_NET_FILES,
  type ProcNetSocket,
  type ProcStatus,
} from "../../guest/mod.ts";

export type { ProcNetSocket, ProcStatus };

/**
 * A process as /proc shows it, here or in a guest. Kernel threads' names in /proc may be longer
 * than task_struct.comm.
 */
export type ProcEntry = GuestProcess;

/** The process `pid` as /proc/PID/status, stat and comm show it; undefined once it has exited. */
export function readProcStatus(pid: number): ProcStatus | undefined {
  try {
    return parseProcStatus(
      pid,
      Deno.readTextFileSync(`/proc/${pid}/status`),
      Deno.readTextFileSync(`/proc/${pid}/stat`),
      Deno.readTextFileSync(`/proc/${pid}/comm`),
    );
  } catch {
    return undefined; // it exited meanwhile
  }
}

/** Every process in /proc now, as {@linkcode readProcStatus} reads it, by pid. */
export function readProcStatuses(): Map<number, ProcStatus> {
  const out = new Map<number, ProcStatus>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const status = readProcStatus(Number(entry.name));
    if (status) out.set(status.pid, status);
  }
  return out;
}

/** Every process in /proc now (processes that vanish while being read are left out). */
export function readProc(): Map<number, ProcEntry> {
  const out = new Map<number, ProcEntry>();
  for (const { pid, ppid, comm, uids, gids, kthread } of readProcStatuses().values()) {
    out.set(pid, { pid, ppid, comm, uid: uids[0], euid: uids[1], gid: gids[0], kthread });
  }
  return out;
}

/**
 * A process's fds as /proc/PID/fd shows them (fd → readlink; null where the link cannot be read,
 * as a process of another user namespace's is not), or undefined when the directory cannot be.
 */
export function readFds(pid: number): Map<number, string | null> | undefined {
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

/**
 * Whether a name read from task_struct.comm is the name /proc shows: the same for processes;
 * for kernel threads /proc may show more (a workqueue worker's queue, a long full name).
 */
export function sameComm(comm: string, proc: ProcEntry): boolean {
  return proc.kthread ? proc.comm.startsWith(comm) && comm.length > 0 : proc.comm === comm;
}

/** Processes that exist with identical attributes in both readings. */
export function stableAcross(
  before: Map<number, ProcEntry>,
  after: Map<number, ProcEntry>,
): ProcEntry[] {
  return [...before.values()].filter((p) => {
    const q = after.get(p.pid);
    return q && q.ppid === p.ppid && q.comm === p.comm && q.uid === p.uid && q.euid === p.euid;
  });
}

/** Test processes: `sleep` started under distinctive names, some with another uid. */
export class TestProcesses implements AsyncDisposable {
  readonly children: { name: string; uid: number; process: Deno.ChildProcess }[] = [];
  #dir: string;
  private constructor(dir: string) {
    this.#dir = dir;
  }

  /**
   * Starts one sleeping process per `uids` entry, named `<prefix><index>` cut to 15 characters
   * (comm is the name of the executable: a symlink to sleep), as that uid and gid.
   */
  static async start(prefix: string, uids: number[]): Promise<TestProcesses> {
    const dir = await Deno.makeTempDir({ prefix: "ebpfmon-procs-" });
    await Deno.chmod(dir, 0o755);
    const set = new TestProcesses(dir);
    for (const [i, uid] of uids.entries()) {
      const name = `${prefix}${i}`.slice(0, 15);
      const path = `${dir}/${name}`;
      await Deno.symlink("/usr/bin/sleep", path).catch((error) => {
        if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
      });
      const process = new Deno.Command("/usr/bin/setpriv", {
        args: [`--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", path, "600"],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
      set.children.push({ name, uid, process });
    }
    await set.#waitExecuted();
    return set;
  }

  /** Waits until every child runs under its final name (setpriv has exec'd sleep). */
  async #waitExecuted(): Promise<void> {
    for (let tries = 0; tries < 500; tries++) {
      const done = this.children.every(({ name, process }) => {
        try {
          return Deno.readTextFileSync(`/proc/${process.pid}/comm`).trim() === name;
        } catch {
          return false;
        }
      });
      if (done) return;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error("Test processes did not start");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const { process } of this.children) {
      try {
        process.kill("SIGKILL");
      } catch {
        // already gone
      }
      await process.status;
    }
    await Deno.remove(this.#dir, { recursive: true });
  }
}

/** Every TCP and UDP socket of this network namespace with an inode, by inode. */
export function procNet(): Map<number, ProcNetSocket> {
  const out = new Map<number, ProcNetSocket>();
  for (const [file] of PROC_NET_FILES) {
    for (const socket of parseProcNet(file, Deno.readTextFileSync(`/proc/net/${file}`))) {
      out.set(socket.inode, socket);
    }
  }
  return out;
}

/** TCP states by number, as the kernel names them (include/net/tcp_states.h). */
export const TCP_STATE_NAMES = [
  "",
  "ESTABLISHED",
  "SYN_SENT",
  "SYN_RECV",
  "FIN_WAIT1",
  "FIN_WAIT2",
  "TIME_WAIT",
  "CLOSE",
  "CLOSE_WAIT",
  "LAST_ACK",
  "LISTEN",
  "CLOSING",
  "NEW_SYN_RECV",
  "BOUND_INACTIVE",
];

/**
 * The fields of a socket `ss` should show for `truth`, as /proc/net says them: protocol, family,
 * addresses, ports, and the state as ss names it (UDP: 1, TCP_ESTABLISHED, is a connected socket,
 * ESTABLISHED as for TCP; 7, TCP_CLOSE, is UNCONN).
 */
export function expectedSocket(truth: ProcNetSocket): unknown[] {
  const state = truth.protocol === "tcp"
    ? TCP_STATE_NAMES[truth.state]
    : truth.state === 1
    ? "ESTABLISHED"
    : "UNCONN";
  return [
    truth.protocol,
    truth.family,
    truth.localAddress,
    truth.localPort,
    truth.remoteAddress,
    truth.remotePort,
    state,
  ];
}

/** The same fields of a socket `ss` lists, in the order of {@linkcode expectedSocket}. */
export function socketFields(s: {
  protocol: string;
  family: string;
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  state: string;
}): unknown[] {
  return [
    s.protocol,
    s.family,
    s.localAddress,
    s.localPort,
    s.remoteAddress,
    s.remotePort,
    s.state,
  ];
}
