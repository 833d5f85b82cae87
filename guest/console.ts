/**
 * What the guest prints on its serial console (guest/init.sh), parsed: the answers to `proc`,
 * `ns`, `modules`, `status`, `net`, `fds`, `run` and `runin` between their markers, and the
 * lines it prints once (`@@ebpfmon KEY ...`). The text of /proc files is parsed as this
 * machine's is (guest/proc_text.ts).
 *
 * @module
 */

import {
  parseProcNet,
  parseProcStatus,
  type ProcNetFile,
  type ProcNetSocket,
  type ProcStatus,
} from "./proc_text.ts";

/** A process as the guest's /proc shows it. */
export interface GuestProcess {
  pid: number;
  ppid: number;
  comm: string;
  uid: number;
  euid: number;
  gid: number;
  /** PF_KTHREAD is set. */
  kthread: boolean;
}

/** A line of the guest's /proc/modules. */
export interface GuestModule {
  name: string;
  size: number;
  /** References; null when the kernel cannot unload modules ("-"). */
  refcount: number | null;
  /** The modules using it. */
  usedBy: string[];
  /** As /proc/modules prints it: `Live`, `Loading` or `Unloading`. */
  state: string;
  /** Its base address, as printed (zeros when the reader may not see addresses). */
  base: string;
  /** Taint letters, e.g. "OE" ("" when none). */
  taints: string;
}

/** The marker every line the host parses starts with. */
export const MARKER = "@@ebpfmon";

/** The begin or end marker of an answer, or null: `@@ebpfmon proc 3 begin` -> proc, 3, begin. */
export function parseAnswerMarker(
  line: string,
): { kind: string; id: string; edge: "begin" | "end" } | null {
  const match = /^@@ebpfmon (\w+) (\S+) (begin|end)$/.exec(line);
  return match ? { kind: match[1], id: match[2], edge: match[3] as "begin" | "end" } : null;
}

/** One process line of a `proc` answer: `@@p PID PPID UID EUID GID KTHREAD COMM`. */
export function parseProcessLine(line: string): GuestProcess {
  const match = /^@@p (\d+) (\d+) (\d+) (\d+) (\d+) ([01]) (.*)$/.exec(line);
  if (!match) throw new SyntaxError(`Cannot parse the guest's process line "${line}"`);
  const [pid, ppid, uid, euid, gid, kthread] = match.slice(1, 7).map(Number);
  return { pid, ppid, comm: match[7], uid, euid, gid, kthread: kthread === 1 };
}

/** One line of a process's /proc/PID/cgroup: `HIERARCHY:CONTROLLERS:PATH`. */
export interface GuestCgroup {
  /** The hierarchy's id: 0 for cgroup v2. */
  hierarchy: number;
  /** The v1 controllers of the hierarchy (none for cgroup v2). */
  controllers: string[];
  /** The cgroup's path from the hierarchy's root, as the reader's cgroup namespace sees it. */
  path: string;
}

/** Where a process is, as the guest's /proc/PID/status (NSpid) and /proc/PID/cgroup say. */
export interface GuestPlacement {
  pid: number;
  /**
   * Its pid in each pid namespace from the guest's root one down to its own (the NSpid line):
   * `[120]` in the root namespace, `[120, 3]` in a container.
   */
  nspid: number[];
  cgroups: GuestCgroup[];
}

/**
 * The lines of an `ns` answer: for each process `@@n PID NSPID...`, then its cgroup lines
 * `@@g PID HIERARCHY:CONTROLLERS:PATH`. The NSpid line must start with PID itself.
 */
export function parseNamespaceAnswer(lines: readonly string[]): Map<number, GuestPlacement> {
  const out = new Map<number, GuestPlacement>();
  let current: GuestPlacement | undefined;
  for (const line of lines) {
    const ns = /^@@n (\d+)((?: \d+)+)$/.exec(line);
    if (ns) {
      const pid = Number(ns[1]);
      const nspid = ns[2].trim().split(" ").map(Number);
      if (nspid[0] !== pid) {
        throw new SyntaxError(`Cannot parse the guest's namespace line "${line}": not its NSpid`);
      }
      if (out.has(pid)) {
        throw new SyntaxError(
          `Cannot parse the guest's namespace line "${line}": pid ${pid} twice`,
        );
      }
      current = { pid, nspid, cgroups: [] };
      out.set(pid, current);
      continue;
    }
    const cgroup = /^@@g (\d+) (\d+):([^:]*):(\/.*)$/.exec(line);
    if (!cgroup) throw new SyntaxError(`Cannot parse the guest's namespace line "${line}"`);
    if (Number(cgroup[1]) !== current?.pid) {
      throw new SyntaxError(
        `Cannot parse the guest's namespace line "${line}": another process's cgroup`,
      );
    }
    current.cgroups.push({
      hierarchy: Number(cgroup[2]),
      controllers: cgroup[3] ? cgroup[3].split(",") : [],
      path: cgroup[4],
    });
  }
  return out;
}

/** The cgroup v2 path of a process (its hierarchy-0 line), or undefined when it has none. */
export function unifiedCgroup(placement: GuestPlacement): string | undefined {
  return placement.cgroups.find((c) => c.hierarchy === 0)?.path;
}

/** One line of a `modules` answer: `@@m` and a line of /proc/modules. */
export function parseModuleLine(line: string): GuestModule {
  const match =
    /^@@m (\S+) (\d+) (-|\d+) (\S+) (Live|Loading|Unloading) (0x[0-9a-f]+)(?: \((\w+)\))?$/
      .exec(line);
  if (!match) throw new SyntaxError(`Cannot parse the guest's module line "${line}"`);
  return {
    name: match[1],
    size: Number(match[2]),
    refcount: match[3] === "-" ? null : Number(match[3]),
    usedBy: match[4] === "-" ? [] : match[4].split(",").filter((s) => s),
    state: match[5],
    base: match[6],
    taints: match[7] ?? "",
  };
}

/**
 * The lines of a `status` answer, `@@s /proc/PID/FILE:LINE` (as grep -H prints each line of
 * status, stat and comm), as the guest's processes: a process missing one of its files (it
 * exited while they were read) is left out.
 * @throws {SyntaxError} on a line of no such file, or a process whose files do not parse.
 */
export function parseStatusAnswer(lines: readonly string[]): Map<number, ProcStatus> {
  const files = new Map<number, { status: string[]; stat: string[]; comm: string[] }>();
  for (const line of lines) {
    const match = /^@@s \/proc\/(\d+)\/(status|stat|comm):(.*)$/.exec(line);
    if (!match) throw new SyntaxError(`Cannot parse the guest's status line "${line}"`);
    const pid = Number(match[1]);
    let texts = files.get(pid);
    if (!texts) files.set(pid, texts = { status: [], stat: [], comm: [] });
    texts[match[2] as "status" | "stat" | "comm"].push(match[3]);
  }
  const out = new Map<number, ProcStatus>();
  for (const [pid, { status, stat, comm }] of [...files].sort(([a], [b]) => a - b)) {
    if (!status.length || stat.length !== 1 || comm.length !== 1) continue;
    out.set(pid, parseProcStatus(pid, status.join("\n"), stat[0], comm[0]));
  }
  return out;
}

/** The TCP and UDP sockets of one of the guest's network namespaces, by inode. */
export interface GuestNetNamespace {
  /** Its inode number, as `readlink /proc/PID/ns/net` shows `net:[N]`. */
  inode: number;
  /** A process of it, whose /proc/PID/net was read. */
  pid: number;
  sockets: Map<number, ProcNetSocket>;
}

/**
 * The lines of a `net` answer: for each namespace `@@k PID net:[INODE]`, then its
 * /proc/PID/net/{tcp,tcp6,udp,udp6} lines as grep -H prints them, `@@N /proc/PID/net/FILE:LINE`.
 * @throws {SyntaxError} on a line that is neither, of another process, or no socket's.
 */
export function parseNetAnswer(lines: readonly string[]): GuestNetNamespace[] {
  const out: GuestNetNamespace[] = [];
  const texts = new Map<GuestNetNamespace, Map<ProcNetFile, string[]>>();
  for (const line of lines) {
    const ns = /^@@k (\d+) net:\[(\d+)\]$/.exec(line);
    if (ns) {
      const namespace = { inode: Number(ns[2]), pid: Number(ns[1]), sockets: new Map() };
      out.push(namespace);
      texts.set(namespace, new Map());
      continue;
    }
    const match = /^@@N \/proc\/(\d+)\/net\/(tcp|tcp6|udp|udp6):(.*)$/.exec(line);
    const namespace = out.at(-1);
    if (!match || Number(match[1]) !== namespace?.pid) {
      throw new SyntaxError(`Cannot parse the guest's socket line "${line}"`);
    }
    const file = match[2] as ProcNetFile;
    const of = texts.get(namespace)!;
    of.set(file, [...of.get(file) ?? [], match[3]]);
  }
  for (const namespace of out) {
    for (const [file, text] of texts.get(namespace)!) {
      for (const socket of parseProcNet(file, text.join("\n"))) {
        namespace.sockets.set(socket.inode, socket);
      }
    }
  }
  return out;
}

/** A process's fds, as the guest's /proc/PID/fd shows them. */
export interface GuestFds {
  /** Its mount namespace's inode number; undefined when it could not be read. */
  mntNs?: number;
  /** fd -> readlink of /proc/PID/fd/FD; null where ls could not read the link. */
  fds: Map<number, string | null>;
}

/** `ls -ln`'s mode, links, uid, gid, size and date (busybox: `Dec  1 21:04` or a year). */
const LS_LONG = String.raw`l[-rwxsStT]{9}\s+\d+\s+\d+\s+\d+\s+\d+\s+\S+\s+\d+\s+\S+`;

/**
 * The lines of an `fds` answer: what `ls -ln /proc/[0-9]*\/ns/mnt /proc/[0-9]*\/fd` prints, each
 * line after `@@f `: the mount namespace links, then for each process `/proc/PID/fd:`, `total
 * N`, a line for each fd (`... FD -> TARGET`), and an empty line. A process whose fd directory
 * ls did not list (it exited) is left out.
 * @throws {SyntaxError} on any other line.
 */
export function parseFdsAnswer(lines: readonly string[]): Map<number, GuestFds> {
  const mnt = new RegExp(String.raw`^@@f ${LS_LONG} /proc/(\d+)/ns/mnt(?: -> mnt:\[(\d+)\])?$`);
  const fd = new RegExp(String.raw`^@@f ${LS_LONG} (\d+)(?: -> (.*))?$`);
  const namespaces = new Map<number, number>();
  const out = new Map<number, GuestFds>();
  let current: GuestFds | undefined;
  for (const line of lines) {
    let match;
    if ((match = mnt.exec(line))) {
      if (match[2]) namespaces.set(Number(match[1]), Number(match[2]));
    } else if ((match = /^@@f \/proc\/(\d+)\/fd:$/.exec(line))) {
      current = { fds: new Map() };
      out.set(Number(match[1]), current);
    } else if ((match = fd.exec(line)) && current) {
      current.fds.set(Number(match[1]), match[2] ?? null);
    } else if (!/^@@f (total \d+)?$/.test(line)) {
      throw new SyntaxError(`Cannot parse the guest's fd line "${line}"`);
    }
  }
  for (const [pid, fds] of out) {
    const ns = namespaces.get(pid);
    if (ns !== undefined) fds.mntNs = ns;
  }
  return out;
}

/** What a shell command run in the guest printed (stdout and stderr, in order) and its status. */
export interface GuestRun {
  /** Its exit status. */
  status: number;
  /** Its output, line by line. */
  output: string[];
}

/** The lines of a `run` answer: `@@o LINE` for each line of output, then `@@x STATUS`. */
export function parseRunAnswer(lines: readonly string[]): GuestRun {
  const last = /^@@x (\d+)$/.exec(lines.at(-1) ?? "");
  if (!last) {
    throw new SyntaxError(`Cannot parse the guest's run answer: it ends with "${lines.at(-1)}"`);
  }
  const output = lines.slice(0, -1).map((line) => {
    if (!line.startsWith("@@o ")) {
      throw new SyntaxError(`Cannot parse the guest's output line "${line}"`);
    }
    return line.slice(4);
  });
  return { status: Number(last[1]), output };
}

/**
 * The `KEY=VALUE` fields of a line the guest prints once, e.g.
 * `@@ebpfmon agent pid=115` -> { pid: "115" }, or null when the line is not `@@ebpfmon KEY ...`.
 */
export function parseEvent(line: string, key: string): Record<string, string> | null {
  if (!line.startsWith(`${MARKER} ${key} `) && line !== `${MARKER} ${key}`) return null;
  const fields: Record<string, string> = {};
  for (const word of line.slice(MARKER.length + key.length + 2).split(" ")) {
    const at = word.indexOf("=");
    if (at > 0) fields[word.slice(0, at)] = word.slice(at + 1);
  }
  return fields;
}
