/**
 * What the benchmark needs to know about the machine it runs on: a description for the results,
 * how many processes there are, and how many there may be; and what a process of it uses, its
 * memory and CPU time, which the benchmarks, the soak, the flood and the tests watch.
 *
 * @module
 */

function read(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return "";
  }
}

/** The machine, for the results. */
export function machine() {
  const cpuinfo = read("/proc/cpuinfo");
  const cpu = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? "unknown CPU";
  const cores = navigator.hardwareConcurrency;
  const memKb = Number(/^MemTotal:\s*(\d+) kB$/m.exec(read("/proc/meminfo"))?.[1] ?? 0);
  const memoryGiB = Math.round(memKb / 1024 / 1024 * 10) / 10;
  const virtual = /^flags\s*:.*\bhypervisor\b/m.test(cpuinfo);
  const kernel = Deno.osRelease();
  return {
    description: `${cpu}, ${cores} ${virtual ? "vCPUs (virtual machine)" : "cores"}, ` +
      `${memoryGiB} GiB, Linux ${kernel}`,
    cpu,
    cores,
    memoryGiB,
    kernel,
    deno: Deno.version.deno,
  };
}

function cpuTimes(): { idle: number; total: number } {
  const fields = read("/proc/stat").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  return { idle: fields[3] + fields[4], total: fields.reduce((a, b) => a + b, 0) };
}

/**
 * CPU seconds used so far by the whole machine, and by this process (with the children it has
 * waited for) and the running processes `pids`.
 */
export function cpuSeconds(pids: number[]): { machine: number; ours: number } {
  const { idle, total } = cpuTimes();
  const ours = pids.reduce(
    (sum, pid) => sum + procCpuSeconds(pid, true),
    procCpuSeconds("self", true),
  );
  return { machine: (total - idle) / USER_HZ, ours };
}

/** Processes (thread groups) on the machine now. */
export function processCount(): number {
  let count = 0;
  for (const entry of Deno.readDirSync("/proc")) if (/^\d+$/.test(entry.name)) count++;
  return count;
}

/** How many processes the machine allows, and which limit says so. */
export function processLimits(): { max: number; reason: string } {
  const limits: [number, string][] = [
    [Number(read("/proc/sys/kernel/pid_max")), "kernel.pid_max"],
    [Number(read("/proc/sys/kernel/threads-max")), "kernel.threads-max"],
  ];
  // RLIMIT_NPROC does not bind root (CAP_SYS_RESOURCE or CAP_SYS_ADMIN).
  if (Deno.uid() !== 0) {
    const nproc = /^Max processes\s+(\d+|unlimited)/m.exec(read("/proc/self/limits"))?.[1];
    if (nproc && nproc !== "unlimited") limits.push([Number(nproc), "ulimit -u"]);
  }
  const [max, reason] = limits.filter(([n]) => n > 0).sort((a, b) => a[0] - b[0])[0];
  return { max, reason };
}

/**
 * TCP bytes sent so far by the established socket of local port `port`, as the kernel counts
 * them (`ss`'s `bytes_sent`); null where `ss` is missing or does not say.
 */
export async function tcpBytesSent(port: number): Promise<number | null> {
  try {
    const { stdout } = await new Deno.Command("ss", {
      args: ["-tinH", "state", "established", `( sport = :${port} )`],
      stdout: "piped",
      stderr: "null",
    }).output();
    const sent = /\bbytes_sent:(\d+)/.exec(new TextDecoder().decode(stdout))?.[1];
    return sent === undefined ? null : Number(sent);
  } catch {
    return null;
  }
}

/** `/proc/loadavg`'s 1, 5 and 15 minute loads; none where unreadable. */
export function loadavg(): number[] {
  try {
    return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).map(Number);
  } catch {
    return [];
  }
}

/** A process's memory as its /proc/PID/status shows it, in KiB. */
export interface ProcMemory {
  /** Resident now (`VmRSS:`). */
  rssKb: number;
  /** The most it has been resident since it started or since {@linkcode resetPeakMemory}. */
  hwmKb: number;
}

/**
 * The memory of process `pid` (this process by default), read now: what the benchmarks, the
 * soak, the flood and the hostile-agent runs watch.
 * @throws {SyntaxError} when its status has no `VmRSS:` or `VmHWM:` line (a kernel thread, a
 * zombie).
 */
export function procMemory(pid: number | "self" = "self"): ProcMemory {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = (field: string) => {
    const line = new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(status);
    if (!line) throw new SyntaxError(`Cannot read the memory of process ${pid}: no ${field} line`);
    return Number(line[1]);
  };
  return { rssKb: kb("VmRSS"), hwmKb: kb("VmHWM") };
}

/** Resets the peak (`VmHWM`) of process `pid` to what is resident now (its `clear_refs`). */
export function resetPeakMemory(pid: number | "self" = "self"): void {
  Deno.writeTextFileSync(`/proc/${pid}/clear_refs`, "5");
}

/** Clock ticks per second of the times in /proc/PID/stat (USER_HZ, 100 on Linux). */
export const USER_HZ = 100;

/**
 * The CPU seconds process `pid` has used, user and system, its threads included; with
 * `children`, also those of the children it has waited for (/proc/PID/stat fields 14 to 17).
 */
export function procCpuSeconds(pid: number | "self" = "self", children = false): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // Counted from the state (field 3), after the command name, which may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = fields.slice(11, children ? 15 : 13).reduce((sum, f) => sum + Number(f), 0);
  if (!Number.isFinite(ticks)) throw new SyntaxError(`Cannot read the CPU times of process ${pid}`);
  return ticks / USER_HZ;
}
