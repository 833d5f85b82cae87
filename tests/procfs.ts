/**
 * Ground truth for the tests: what this machine's /proc says about its processes, and test
 * processes with distinctive names and a chosen uid.
 *
 * @module
 */

import type { GuestProcess } from "../guest/console.ts";

/**
 * A process as /proc shows it, here or in a guest. Kernel threads' names in /proc may be longer
 * than task_struct.comm.
 */
export type ProcEntry = GuestProcess;

const PF_KTHREAD = 0x0020_0000;

/** Every process in /proc now (processes that vanish while being read are left out). */
export function readProc(): Map<number, ProcEntry> {
  const out = new Map<number, ProcEntry>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const status = Deno.readTextFileSync(`/proc/${entry.name}/status`);
      const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, "m").exec(status)![1];
      const [uid, euid] = field("Uid").split(/\s+/).map(Number);
      const [gid] = field("Gid").split(/\s+/).map(Number);
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const flags = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[6]);
      out.set(Number(entry.name), {
        pid: Number(entry.name),
        ppid: Number(field("PPid")),
        comm: Deno.readTextFileSync(`/proc/${entry.name}/comm`).replace(/\n$/, ""),
        uid,
        euid,
        gid,
        kthread: (flags & PF_KTHREAD) !== 0,
      });
    } catch {
      // the process exited between readdir and read
    }
  }
  return out;
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

/** A socket as /proc/net/{tcp,tcp6,udp,udp6} shows it. */
export interface ProcNetSocket {
  protocol: "tcp" | "udp";
  family: "inet" | "inet6";
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  state: number;
  inode: number;
}

function hexAddress(hex: string): string {
  const bytes = hex.match(/../g)!.map((b) => parseInt(b, 16));
  if (bytes.length === 4) return bytes.reverse().join(".");
  // /proc/net/tcp6 prints each 32-bit word in host (little-endian) order.
  const words: number[] = [];
  for (let i = 0; i < 16; i += 4) words.push(...bytes.slice(i, i + 4).reverse());
  const groups = [];
  for (let i = 0; i < 16; i += 2) groups.push(((words[i] << 8) | words[i + 1]).toString(16));
  return groups.join(":").replace(/(^|:)0(:0)+(:|$)/, "::").replace(/:{3,}/, "::");
}

/** Every TCP and UDP socket of this network namespace with an inode, by inode. */
export function procNet(): Map<number, ProcNetSocket> {
  const out = new Map<number, ProcNetSocket>();
  for (
    const [file, protocol, family] of [
      ["tcp", "tcp", "inet"],
      ["tcp6", "tcp", "inet6"],
      ["udp", "udp", "inet"],
      ["udp6", "udp", "inet6"],
    ] as const
  ) {
    for (const line of Deno.readTextFileSync(`/proc/net/${file}`).split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const [local, localPort] = f[1].split(":");
      const [remote, remotePort] = f[2].split(":");
      const inode = Number(f[9]);
      if (!inode) continue;
      out.set(inode, {
        protocol,
        family,
        localAddress: hexAddress(local),
        localPort: parseInt(localPort, 16),
        remoteAddress: hexAddress(remote),
        remotePort: parseInt(remotePort, 16),
        state: parseInt(f[3], 16),
        inode,
      });
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
 * ESTAB; 7, TCP_CLOSE, is UNCONN).
 */
export function expectedSocket(truth: ProcNetSocket): unknown[] {
  const state = truth.protocol === "tcp"
    ? TCP_STATE_NAMES[truth.state]
    : truth.state === 1
    ? "ESTAB"
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
