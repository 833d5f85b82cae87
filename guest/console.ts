/**
 * What the guest prints on its serial console (guest/init.sh), parsed: the answers to `proc`,
 * `ns`, `modules`, `run` and `runin` between their markers, and the lines it prints once
 * (`@@ebpfmon KEY ...`).
 *
 * @module
 */

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
