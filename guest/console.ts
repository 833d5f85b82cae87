/**
 * What the guest prints on its serial console (guest/init.sh), parsed: the answers to `proc`,
 * `modules` and `run` between their markers, and the lines it prints once (`@@ebpfmon KEY ...`).
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
