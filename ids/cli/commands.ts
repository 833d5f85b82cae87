/**
 * The IDS's commands: `ps`, and the output they share (a table or JSON, and a stats line).
 *
 * @module
 */

import { Command, Option } from "@commander-js/extra-typings";
import { DEFAULT_AGENT_ADDRESS, DEFAULT_STATE, LIMITS } from "../../protocol/mod.ts";
import {
  type AgentTarget,
  type GuestSession,
  type Mode,
  MODES,
  openSession,
  type SnapshotStats,
} from "../client/mod.ts";
import {
  type ContainerFilter,
  inContainer,
  parseCgroupPath,
  parseNamespaceId,
  type Process,
} from "../linux/mod.ts";
import { scanSections } from "../detect/mod.ts";
import { printable, printableName, terminalJson } from "./terminal.ts";

export { printable };

/** One line of stats, as printed under every table. */
export function formatStats(stats: SnapshotStats): string {
  const parts = [
    `mode=${stats.mode}`,
    `round-trips=${stats.roundTrips}`,
    `bytes=${stats.bytes}`,
    `ms=${stats.ms.toFixed(1)}`,
    `truncated=${stats.truncated ? "yes" : "no"}`,
  ];
  if (stats.prefetch) {
    parts.push(
      `objects=${stats.prefetch.objects}`,
      `guest-ms=${stats.prefetch.guestMs.toFixed(2)}`,
    );
    if (stats.prefetch.stop !== "complete") parts.push(`walk-stopped=${stats.prefetch.stop}`);
  }
  if (stats.misses) parts.push(`misses=${stats.misses}`);
  if (stats.hold) {
    parts.push(
      stats.hold.state === "refused"
        ? "hold=refused"
        : `hold=${stats.hold.state} held-ms=${stats.hold.heldMs.toFixed(1)}`,
    );
  }
  if (stats.reason) parts.push(`reason="${printable(stats.reason)}"`);
  return parts.join(" ");
}

/** Columns of text, left-aligned except the numeric ones. */
export function formatTable(header: string[], rows: string[][], numeric: Set<number>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) =>
      i === cells.length - 1 ? c : numeric.has(i) ? c.padStart(widths[i]) : c.padEnd(widths[i])
    ).join("  ");
  return [line(header), ...rows.map(line)].join("\n");
}

/**
 * Which kernel views hold a process, one letter each: `t` the task list, `i` the pid IDR, `c`
 * its parent's children list; `-` for a view that does not hold it ("ti-": hidden from the
 * children list).
 */
export function viewLetters(p: Process): string {
  if (!p.seenIn) return "";
  return (["tasks", "pid_idr", "children"] as const).map((v, i) =>
    p.seenIn!.includes(v) ? "tic"[i] : "-"
  ).join("");
}

const known = (n: number | undefined) => n === undefined ? "-" : String(n);

/**
 * The process table as `ps` would print it; kernel threads in brackets. Its threads (THR), pid
 * namespace and pid there (PIDNS, NSPID), network namespace (NETNS) and cgroup v2 path are
 * shown when they were read; `-` for a process without one.
 */
export function formatProcesses(processes: Process[]): string {
  const views = processes.some((p) => p.seenIn);
  const ns = processes.some((p) => p.pidNs !== undefined || p.threads !== undefined);
  const cgroups = processes.some((p) => p.cgroup !== undefined);
  const rows = processes.map((p) => [
    String(p.pid),
    String(p.ppid),
    String(p.uid),
    String(p.euid),
    String(p.gid),
    p.state,
    ...(views ? [viewLetters(p)] : []),
    ...(ns ? [known(p.threads), known(p.pidNs), known(p.nsPid), known(p.netNs)] : []),
    ...(cgroups ? [p.cgroup === undefined ? "-" : printableName(p.cgroup)] : []),
    printableName(p.kthread ? `[${p.comm}]` : p.comm) +
    (p.error ? `  (error: ${printable(p.error)})` : ""),
  ]);
  const header = ["PID", "PPID", "UID", "EUID", "GID", "S", ...(views ? ["SEEN"] : [])];
  const numeric = [0, 1, 2, 3, 4];
  if (ns) {
    numeric.push(...[0, 1, 2, 3].map((i) => header.length + i));
    header.push("THR", "PIDNS", "NSPID", "NETNS");
  }
  return formatTable(
    [...header, ...(cgroups ? ["CGROUP"] : []), "COMM"],
    rows,
    new Set(numeric),
  );
}

/** One row per thread of `processes` (their `threadList`), as `ps -L` would print them. */
export function formatThreads(processes: Process[]): string {
  const rows = processes.flatMap((p) =>
    (p.threadList ?? []).map((t) => [
      String(t.tgid),
      String(t.tid),
      String(p.uid),
      t.state,
      printableName(p.kthread ? `[${t.comm}]` : t.comm) +
      (t.error ? `  (error: ${printable(t.error)})` : ""),
    ])
  );
  return formatTable(["PID", "TID", "UID", "S", "COMM"], rows, new Set([0, 1, 2]));
}

function targetOptions<T extends Command>(command: T) {
  return command
    .option("--agent <host:port>", "the agent to ask", DEFAULT_AGENT_ADDRESS)
    .option("--state <dir>", "directory of the credentials and BTF store", DEFAULT_STATE)
    .option("--pin <fingerprint>", "the agent certificate's SHA-256 (default: DIR/agent.pem)")
    .addOption(
      new Option("--mode <mode>", "how memory is fetched").choices(MODES).default(
        "prefetch" as Mode,
      ),
    )
    .option("--json", "print JSON instead of a table")
    .option(
      "--hold <ms>",
      `hold the workload the agent may hold (its --hold-cgroup) still during the snapshot, ` +
        `for at most MS (1..${LIMITS.maxHoldMs})`,
    );
}

/** What a view command prints: JSON (the whole answer), or a table, then the stats line. */
export interface ViewOutput {
  json: Record<string, unknown>;
  table: string;
  stats: SnapshotStats;
}

/**
 * A command that takes one snapshot of a view of the guest and prints it: every view command has
 * the same flags (`--agent`, `--state`, `--pin`, `--mode`, `--json`) and the same stats line.
 */
export function viewCommand(
  name: string,
  description: string,
  run: (
    session: GuestSession,
    mode: Mode,
    args: string[],
    options: Record<string, unknown>,
  ) => Promise<ViewOutput>,
  argument?: { name: string; description: string },
  /** Adds the command's own options; `check` validates them before connecting. */
  own?: { add: (command: Command) => void; check?: (options: Record<string, unknown>) => void },
) {
  const command = new Command(name);
  if (argument) command.argument(argument.name, argument.description);
  own?.add(command);
  return targetOptions(command)
    .description(description)
    .action(async function (this: Command) {
      const options = this.opts() as AgentTarget & { mode: Mode; json?: boolean; hold?: string };
      const all: Record<string, unknown> = this.opts();
      own?.check?.(all);
      const holdMs = options.hold === undefined ? undefined : Number(options.hold);
      const valid = Number.isSafeInteger(holdMs) && holdMs! >= 1 && holdMs! <= LIMITS.maxHoldMs;
      if (holdMs !== undefined && !valid) {
        throw new TypeError(`Invalid --hold "${options.hold}": expected 1..${LIMITS.maxHoldMs} ms`);
      }
      using session = await openSession(options);
      session.holdMs = holdMs;
      const out = await run(session, options.mode, this.args, all);
      if (options.json) {
        // The in-guest programs that served the view, as the agent loaded them for the IDS.
        const stats = { ...out.stats, programs: session.programs };
        console.log(terminalJson({ ...out.json, stats }));
      } else {
        console.log(out.table);
        console.log(formatStats(out.stats));
      }
      if (out.stats.hold?.error) {
        console.error(`warning: the snapshot was not held: ${printable(out.stats.hold.error)}`);
      }
    });
}

/** The container filters of `ps`, validated. @throws {TypeError} naming a bad one. */
function psFilter(options: Record<string, unknown>): ContainerFilter {
  const filter: ContainerFilter = {};
  if (typeof options.cgroup === "string") {
    filter.cgroup = parseCgroupPath(options.cgroup, "--cgroup");
  }
  if (typeof options.pidns === "string") filter.pidNs = parseNamespaceId(options.pidns, "--pidns");
  return filter;
}

/** Builds the `ps` command. */
export function psCommand() {
  return viewCommand(
    "ps",
    "Print the guest's process table, rebuilt from its kernel memory: every process the " +
      "task list, the pid IDR or the children lists hold (SEEN: t, i, c; - where missing), " +
      "with its threads (THR), pid namespace and pid there, network namespace and cgroup",
    async (session, mode, _args, options) => {
      const filter = psFilter(options);
      const { scan, stats } = await scanSections(session, mode, ["processes"]);
      const section = scan.sections.processes!;
      if (!section.supported) throw new Error(`Cannot list processes: ${section.reason}`);
      const { hidden, views, cgroups } = section.value;
      const threads = options.threads === true;
      const processes = section.value.processes.filter((p) => inContainer(p, filter))
        .map((p) => threads ? p : { ...p, threadList: undefined });
      const notes = cgroups?.supported === false
        ? [`cgroups: not shown: ${printable(cgroups.reason ?? "")}`]
        : [];
      return {
        json: { processes, hidden, views, ...(cgroups ? { cgroups } : {}) },
        table: [threads ? formatThreads(processes) : formatProcesses(processes), ...notes]
          .join("\n"),
        stats,
      };
    },
    undefined,
    {
      add: (command) =>
        command
          .option("--threads", "list every thread (TID, its own COMM) instead of processes")
          .option("--cgroup <path>", "only processes in this cgroup v2 cgroup or below it")
          .option("--pidns <id>", "only processes in this pid namespace (/proc/PID/ns/pid)"),
      check: psFilter,
    },
  );
}
