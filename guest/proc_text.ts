/**
 * Parsers of the text of /proc files, for the tests' ground truth: this machine's /proc
 * (tests/support/procfs.ts) and the guest's, as its console relays it (guest/boot.ts). Each throws a
 * SyntaxError naming what it could not read.
 *
 * @module
 */

/** task_struct.flags of a kernel thread (include/linux/sched.h). */
export const PF_KTHREAD = 0x0020_0000;

/** A process as /proc/PID/status, /proc/PID/stat and /proc/PID/comm show it. */
export interface ProcStatus {
  pid: number;
  tgid: number;
  ppid: number;
  /** /proc/PID/comm: for a kernel thread, maybe longer than task_struct.comm. */
  comm: string;
  /** One letter (stat field 3). */
  state: string;
  /** Real, effective, saved and file-system uid (the `Uid:` line). */
  uids: number[];
  /** Real, effective, saved and file-system gid (the `Gid:` line). */
  gids: number[];
  caps: { CapEff: bigint; CapPrm: bigint; CapInh: bigint };
  /** PF_KTHREAD is set (stat field 9, flags). */
  kthread: boolean;
  /** Clock ticks from boot to its start (stat field 22): what tells it from a later one. */
  start: number;
}

/**
 * The process `pid` from the text of its /proc/PID/status, /proc/PID/stat and /proc/PID/comm
 * (a trailing newline or none).
 * @throws {SyntaxError} when a line or field is missing or malformed.
 */
export function parseProcStatus(
  pid: number,
  status: string,
  stat: string,
  comm: string,
): ProcStatus {
  const fail = (what: string): never => {
    throw new SyntaxError(`Cannot parse /proc/${pid}: ${what}`);
  };
  const field = (name: string) =>
    new RegExp(`^${name}:[ \\t]*(.*)$`, "m").exec(status)?.[1] ?? fail(`no ${name}: line`);
  const ids = (name: string) => {
    const values = field(name).trim().split(/\s+/).map(Number);
    if (values.length !== 4 || !values.every(Number.isSafeInteger)) fail(`its ${name}: line`);
    return values;
  };
  const number = (name: string) => {
    const value = Number(field(name));
    return Number.isSafeInteger(value) ? value : fail(`its ${name}: line`);
  };
  const cap = (name: string) =>
    /^[0-9a-f]{16}$/.test(field(name)) ? BigInt("0x" + field(name)) : fail(`its ${name}: line`);
  // The name in stat is in parentheses and may hold any of them: the fields follow the last.
  const close = stat.lastIndexOf(")");
  const rest = stat.slice(close + 2).trim().split(" ");
  if (close < 0 || rest.length < 20) fail("its stat");
  const [flags, start] = [Number(rest[6]), Number(rest[19])];
  if (!/^[A-Za-z]$/.test(rest[0]) || !Number.isSafeInteger(flags) || !Number.isSafeInteger(start)) {
    fail("its stat");
  }
  return {
    pid,
    tgid: number("Tgid"),
    ppid: number("PPid"),
    comm: comm.replace(/\n$/, ""),
    state: rest[0],
    uids: ids("Uid"),
    gids: ids("Gid"),
    caps: { CapEff: cap("CapEff"), CapPrm: cap("CapPrm"), CapInh: cap("CapInh") },
    kthread: (flags & PF_KTHREAD) !== 0,
    start,
  };
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

/** The files of /proc/net with TCP and UDP sockets: name, protocol and family. */
export const PROC_NET_FILES = [
  ["tcp", "tcp", "inet"],
  ["tcp6", "tcp", "inet6"],
  ["udp", "udp", "inet"],
  ["udp6", "udp", "inet6"],
] as const;

/** The name of one of {@linkcode PROC_NET_FILES}. */
export type ProcNetFile = typeof PROC_NET_FILES[number][0];

/**
 * An address as /proc/net prints it (hex, each 32-bit word in host order: little-endian) as ss
 * writes it: dotted IPv4; IPv6 as RFC 5952 says (lower case, the longest run of two or more zero
 * groups, the first of equal ones, as "::"), a v4-mapped address with its IPv4 part dotted.
 */
function hexAddress(hex: string): string {
  const bytes = hex.match(/../g)!.map((b) => parseInt(b, 16));
  if (bytes.length === 4) return bytes.reverse().join(".");
  const words: number[] = [];
  for (let i = 0; i < 16; i += 4) words.push(...bytes.slice(i, i + 4).reverse());
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((words[i] << 8) | words[i + 1]);
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return "::ffff:" + words.slice(12).join(".");
  }
  let [run, runLength] = [-1, 1];
  for (let i = 0; i < 8; i++) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > runLength) [run, runLength] = [i, j - i];
  }
  const text = (gs: number[]) => gs.map((g) => g.toString(16)).join(":");
  return run < 0
    ? text(groups)
    : `${text(groups.slice(0, run))}::${text(groups.slice(run + runLength))}`;
}

/**
 * The sockets with an inode in the text of /proc/net/`file` (its heading line first).
 * @throws {SyntaxError} when a line is not a socket's.
 */
export function parseProcNet(file: ProcNetFile, text: string): ProcNetSocket[] {
  const [, protocol, family] = PROC_NET_FILES.find(([name]) => name === file)!;
  const digits = family === "inet" ? 8 : 32;
  const endpoint = new RegExp(`^([0-9A-F]{${digits}}):([0-9A-F]{4})$`);
  const out: ProcNetSocket[] = [];
  for (const line of text.split("\n").slice(1)) {
    if (!line.trim()) continue;
    const f = line.trim().split(/\s+/);
    const local = endpoint.exec(f[1] ?? "");
    const remote = endpoint.exec(f[2] ?? "");
    const inode = Number(f[9]);
    if (!local || !remote || !/^[0-9A-F]{2}$/.test(f[3]) || !Number.isSafeInteger(inode)) {
      throw new SyntaxError(`Cannot parse the /proc/net/${file} line "${line}"`);
    }
    if (!inode) continue;
    out.push({
      protocol,
      family,
      localAddress: hexAddress(local[1]),
      localPort: parseInt(local[2], 16),
      remoteAddress: hexAddress(remote[1]),
      remotePort: parseInt(remote[2], 16),
      state: parseInt(f[3], 16),
      inode,
    });
  }
  return out;
}
