/**
 * What `bench:hold` makes of its snapshots: the inconsistencies each one shows, from the IDS's
 * own result (the `processes` section: three views of the process list), each series' summary,
 * and the Markdown report.
 *
 * A snapshot is inconsistent when it lists a process whose parent it does not list (`orphan`;
 * pid 1 and kthreadd have parent 0), when a view's walk was cut short (`truncated`: a freed
 * element, a loop, a bad pointer), or when the task list and the pid IDR hold a different number
 * of processes (`count`). The same is counted for the workload's own processes (named
 * `bench-churn`): the machine's other processes are not held, and change under any snapshot.
 *
 * @module
 */

import type { Process, ProcessViews } from "../ids/linux/mod.ts";
import type { Mode } from "../ids/client/mod.ts";
import { quantile } from "./results.ts";

/** The workload's processes are named so (`churn.c`). */
export const WORKLOAD_COMM = "bench-churn";

/** The inconsistencies of one snapshot, over the whole list or the workload's processes. */
export interface Inconsistency {
  /** Processes listed whose parent is not listed. */
  orphans: number;
  /** A view's walk was cut short. */
  truncated: boolean;
  /** Processes the task list holds and the pid IDR does not, or the other way round. */
  countGap: number;
}

/** One measured snapshot. */
export interface HoldSample {
  ms: number;
  roundTrips: number;
  /** How the hold went ("none" when not asked for). */
  hold: "none" | "held" | "expired" | "refused";
  /** Milliseconds the agent held the workload. */
  heldMs: number;
  /** Milliseconds the kernel took to freeze it. */
  freezeMs: number;
  /** The workload's forks a second, from just before the snapshot to just after it. */
  forkRate: number;
  processes: number;
  workload: number;
  machine: Inconsistency;
  own: Inconsistency;
  /** Suspicions of hidden processes the live re-check cleared, and those it did not. */
  cleared: number;
  hidden: number;
  /** Why a view was cut short. */
  reasons: string[];
}

function isInconsistent(i: Inconsistency): boolean {
  return i.orphans > 0 || i.truncated || i.countGap > 0;
}

function inconsistency(all: Process[], of: Process[], truncated: boolean): Inconsistency {
  const pids = new Set(all.map((p) => p.pid));
  const orphans = of.filter((p) => p.pid > 0 && p.ppid > 0 && !pids.has(p.ppid)).length;
  const countGap = of.filter((p) => {
    const seen = p.seenIn ?? [];
    return seen.includes("tasks") !== seen.includes("pid_idr");
  }).length;
  return { orphans, truncated, countGap };
}

/** The inconsistencies of one `processes` section. */
export function inconsistencies(views: ProcessViews): {
  machine: Inconsistency;
  own: Inconsistency;
  workload: number;
  reasons: string[];
} {
  const walks = Object.values(views.views);
  const truncated = walks.some((w) => w.truncated);
  const own = views.processes.filter((p) => p.comm === WORKLOAD_COMM);
  const machine = inconsistency(views.processes, views.processes, truncated);
  // The counts of the walks themselves, as the views report them.
  if (views.views.tasks.count !== views.views.pid_idr.count) {
    machine.countGap = Math.max(
      machine.countGap,
      Math.abs(views.views.tasks.count - views.views.pid_idr.count),
    );
  }
  return {
    machine,
    own: inconsistency(views.processes, own, truncated),
    workload: own.length,
    reasons: walks.flatMap((w) => w.reason ?? []),
  };
}

/** One series: a mode, held or not. */
export interface HoldSeries {
  mode: Mode;
  hold: boolean;
  samples: HoldSample[];
}

/** What a series comes to. */
export function summariseSeries(series: HoldSeries) {
  const s = series.samples;
  const count = (f: (x: HoldSample) => boolean) => s.filter(f).length;
  const median = (f: (x: HoldSample) => number) => quantile(s.map(f), 0.5);
  const totalMs = s.reduce((n, x) => n + x.ms, 0);
  const heldMs = s.reduce((n, x) => n + x.heldMs, 0);
  return {
    mode: series.mode,
    hold: series.hold,
    snapshots: s.length,
    inconsistent: count((x) => isInconsistent(x.machine)),
    orphan: count((x) => x.machine.orphans > 0),
    truncated: count((x) => x.machine.truncated),
    countGap: count((x) => x.machine.countGap > 0),
    ownInconsistent: count((x) => isInconsistent(x.own)),
    ownOrphan: count((x) => x.own.orphans > 0),
    ownCountGap: count((x) => x.own.countGap > 0),
    hidden: s.reduce((n, x) => n + x.hidden, 0),
    cleared: s.reduce((n, x) => n + x.cleared, 0),
    medianMs: median((x) => x.ms),
    medianRoundTrips: median((x) => x.roundTrips),
    medianHeldMs: median((x) => x.heldMs),
    medianFreezeMs: median((x) => x.freezeMs),
    /** The share of the snapshots' time the workload was frozen. */
    heldShare: totalMs ? heldMs / totalMs : 0,
    medianForkRate: median((x) => x.forkRate),
    medianWorkload: median((x) => x.workload),
    medianProcesses: median((x) => x.processes),
    notHeld: count((x) => x.hold === "refused" || x.hold === "expired"),
  };
}

export type SeriesSummary = ReturnType<typeof summariseSeries>;

function fmt(n: number, digits = 1): string {
  if (!Number.isFinite(n)) return "-";
  return n >= 100 ? n.toFixed(0) : n.toFixed(digits);
}

/** The report's table, one row per series. */
export function renderHoldTable(summaries: SeriesSummary[]): string {
  const header = [
    "mode",
    "hold",
    "snapshots",
    "inconsistent",
    "orphan",
    "truncated",
    "tasks ≠ IDR",
    "workload inconsistent",
    "workload orphan",
    "workload tasks ≠ IDR",
    "workload processes",
    "median ms",
    "held ms",
    "freeze ms",
    "frozen share",
    "forks/s",
  ];
  const rows = summaries.map((s) => [
    s.mode,
    s.hold ? "yes" : "no",
    String(s.snapshots),
    String(s.inconsistent),
    String(s.orphan),
    String(s.truncated),
    String(s.countGap),
    String(s.ownInconsistent),
    String(s.ownOrphan),
    String(s.ownCountGap),
    fmt(s.medianWorkload, 0),
    fmt(s.medianMs),
    s.hold ? fmt(s.medianHeldMs) : "-",
    s.hold ? fmt(s.medianFreezeMs, 2) : "-",
    s.hold ? `${(s.heldShare * 100).toFixed(0)}%` : "-",
    fmt(s.medianForkRate, 0),
  ]);
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}
