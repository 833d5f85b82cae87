/**
 * The IDS side of one benchmark point, run as its own process (so its CPU time and peak memory
 * are its own): connects to the agent (directly or through a relay), takes a warm-up snapshot
 * per view and mode, then the measured ones, views and modes in turn so that they are measured
 * side by side, and prints a {@linkcode WorkerReport} as JSON on standard output.
 *
 * Before each snapshot it resets its own and the agent's peak resident memory
 * (`/proc/PID/clear_refs`), so the peaks are those reached during that snapshot. It does not
 * force a garbage collection first (that made a small prefetch twice as slow): like a long-running
 * IDS, a snapshot may find garbage of the previous one still in memory.
 *
 * Usage: `deno run -A bench/ids_worker.ts --agent HOST:PORT --state DIR --agent-pid PID
 *   --views processes --modes prefetch,on-demand --reps 10 --budget-ms 300000 --warmup-ms 1000`
 *
 * @module
 */

import { runCheck, scanSections } from "../ids/detect/mod.ts";
import { procMemory, resetPeakMemory } from "./machine.ts";
import process from "node:process";
import { parseArgs } from "node:util";
import {
  DEFAULT_FULL_EVERY,
  type GuestSession,
  type Mode,
  openSession,
  type SnapshotStats,
} from "../ids/client/mod.ts";

/** A view as the benchmark takes it: its size and what it cost. */
type ViewRunner = (
  session: GuestSession,
  mode: Mode,
) => Promise<{ items: number; stats: SnapshotStats }>;

/** The views the session offers, by name. */
export const VIEWS: Record<string, ViewRunner> = {
  processes: async (session, mode) => {
    const { processes, stats } = await session.processes(mode);
    return { items: processes.length, stats };
  },
  /** `ps`: every process the task list, the pid IDR or the children lists hold. */
  ps: async (session, mode) => {
    const { scan, stats } = await scanSections(session, mode, ["processes"]);
    const section = scan.sections.processes;
    return { items: section?.supported ? section.value.processes.length : 0, stats };
  },
  /** Every detection rule over one scan; items are the findings. */
  check: async (session, mode) => {
    const { findings, stats } = await runCheck(session, mode);
    return { items: findings.length, stats };
  },
};

/**
 * A view name with this suffix (`processes:delta`) is measured as a delta refresh: each sample is
 * the snapshot right after a whole one of the same view (taken first, not measured), as a
 * monitor refreshing a quiet guest takes them. Without it, every snapshot is taken whole.
 */
export const DELTA = ":delta";

/** The view `name` takes, and whether it is measured as a delta; undefined for no such view. */
export function viewOf(name: string): { run: ViewRunner; delta: boolean } | undefined {
  const delta = name.endsWith(DELTA);
  const base = delta ? name.slice(0, -DELTA.length) : name;
  return Object.hasOwn(VIEWS, base) ? { run: VIEWS[base], delta } : undefined;
}

/** One measured snapshot. */
export interface Sample {
  ms: number;
  roundTrips: number;
  bytes: number;
  /** Milliseconds the in-guest walk ran (prefetch modes), else null. */
  guestMs: number | null;
  /** Milliseconds from request to END in the agent (prefetch modes), else null. */
  agentMs: number | null;
  /** User + system CPU milliseconds of this process during the snapshot. */
  idsCpuMs: number;
  /** Resident KiB of this process when the snapshot starts. */
  idsBaseKb: number;
  /** Peak resident KiB of this process during the snapshot. */
  idsPeakKb: number;
  /** Peak resident KiB of the agent during the snapshot. */
  agentPeakKb: number;
  /** Items the view returned (processes, ...). */
  items: number;
  truncated: boolean;
  misses: number;
}

/** What one view in one mode measured. */
export interface ModeReport {
  view: string;
  mode: Mode;
  warmupMs: number | null;
  samples: Sample[];
  /** Why there are fewer samples than asked, or why there are none. */
  note?: string;
  error?: string;
}

export interface WorkerReport {
  results: ModeReport[];
  /** Resident KiB of this process once the session is open (BTF parsed), before any snapshot. */
  openKb: number;
}

async function measure(
  session: GuestSession,
  view: string,
  mode: Mode,
  agentPid: number,
): Promise<Sample> {
  const { run, delta } = viewOf(view)!;
  // Asking every prefetch whole forgets the previous answer: a delta is then against the next.
  session.fullEvery = 1;
  if (delta) {
    session.fullEvery = DEFAULT_FULL_EVERY;
    await run(session, mode);
  }
  resetPeakMemory("self");
  resetPeakMemory(agentPid);
  const idsBaseKb = procMemory().rssKb;
  const cpu = process.cpuUsage();
  const { items, stats } = await run(session, mode);
  const used = process.cpuUsage(cpu);
  return {
    ms: stats.ms,
    roundTrips: stats.roundTrips,
    bytes: stats.bytes,
    guestMs: stats.prefetch?.guestMs ?? null,
    agentMs: stats.prefetch?.agentMs ?? null,
    idsCpuMs: (used.user + used.system) / 1000,
    idsBaseKb,
    idsPeakKb: procMemory().hwmKb,
    agentPeakKb: procMemory(agentPid).hwmKb,
    items,
    truncated: stats.truncated,
    misses: stats.misses,
  };
}

/**
 * Runs `snapshot` until it has run for `ms` in all (at least once, at most 500 times): the JIT
 * compiler needs a hundred snapshots of a small view to settle, and one of a large one. Returns
 * the last.
 */
async function warmUp(snapshot: () => Promise<Sample>, ms: number): Promise<Sample> {
  let spent = 0;
  for (let i = 0;; i++) {
    const sample = await snapshot();
    spent += sample.ms;
    if (spent >= ms || i === 499) return sample;
  }
}

/** Most measured snapshots per mode, however fast the point. */
const MAX_REPS = 200;

/**
 * Runs every view in every mode: a warm-up each, then rounds of one measured snapshot of every
 * view in every mode in turn, `reps` rounds or as many as `sampleMs` of the fastest series'
 * snapshots take when that is more (at most {@linkcode MAX_REPS}: a median of a few 3 ms
 * snapshots is noise). Every series takes every round, so each snapshot of one has a snapshot of
 * every other measured beside it; a mode whose warm-up says its snapshots would take longer than
 * `budgetMs` sits out the rounds past its budget (never fewer than `minReps`), and says so in its
 * note.
 */
export async function runPoint(session: GuestSession, options: {
  views: string[];
  modes: Mode[];
  agentPid: number;
  reps: number;
  minReps: number;
  budgetMs: number;
  warmupMs: number;
  sampleMs: number;
}): Promise<ModeReport[]> {
  // Every view in every mode is one series; measuring them in turn puts the same moment of the
  // machine (whose speed drifts) behind each, so their ratios compare like with like. A series
  // measured alone at the end (say the fast list after the slow check stopped) would not be.
  const reports = options.views.flatMap((view) =>
    options.modes.map((mode): ModeReport => ({ view, mode, warmupMs: null, samples: [] }))
  );
  const affordable = new Map<ModeReport, number>();
  let rounds = options.reps;
  for (const report of reports) {
    try {
      const warmup = await warmUp(
        () => measure(session, report.view, report.mode, options.agentPid),
        options.warmupMs,
      );
      report.warmupMs = warmup.ms;
      affordable.set(report, Math.floor(options.budgetMs / Math.max(warmup.ms, 1e-3)));
      rounds = Math.max(rounds, Math.ceil(options.sampleMs / Math.max(warmup.ms, 1e-3)));
    } catch (error) {
      report.error = (error as Error).message;
    }
  }
  rounds = Math.min(MAX_REPS, rounds);
  const wanted = new Map<ModeReport, number>();
  for (const [report, most] of affordable) {
    const reps = Math.max(options.minReps, Math.min(rounds, most));
    if (reps < options.reps) {
      report.note = `${reps} of ${options.reps} repetitions: the warm-up took ${
        report.warmupMs!.toFixed(0)
      } ms and the budget per point and mode is ${(options.budgetMs / 1000).toFixed(0)} s`;
    }
    wanted.set(report, reps);
  }
  for (let i = 0; i < rounds; i++) {
    for (const report of reports) {
      if (report.error || i >= (wanted.get(report) ?? 0)) continue;
      try {
        report.samples.push(
          await measure(session, report.view, report.mode, options.agentPid),
        );
      } catch (error) {
        report.error = (error as Error).message;
      }
    }
  }
  return reports;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      agent: { type: "string" },
      state: { type: "string" },
      "agent-pid": { type: "string" },
      views: { type: "string", default: Object.keys(VIEWS).join(",") },
      modes: { type: "string" },
      reps: { type: "string", default: "10" },
      "min-reps": { type: "string", default: "3" },
      "budget-ms": { type: "string", default: "300000" },
      "warmup-ms": { type: "string", default: "1000" },
      "sample-ms": { type: "string", default: "0" },
    },
  });
  if (!values.agent || !values.state || !values["agent-pid"] || !values.modes) {
    throw new TypeError(
      "Cannot run a point: --agent, --state, --agent-pid and --modes are required",
    );
  }
  const views = values.views.split(",");
  for (const view of views) {
    if (!viewOf(view)) throw new TypeError(`Cannot run view "${view}": no such view`);
  }
  using session = await openSession({ agent: values.agent, state: values.state });
  const openKb = procMemory().rssKb;
  const results = await runPoint(session, {
    views,
    modes: values.modes.split(",") as Mode[],
    agentPid: Number(values["agent-pid"]),
    reps: Number(values.reps),
    minReps: Number(values["min-reps"]),
    budgetMs: Number(values["budget-ms"]),
    warmupMs: Number(values["warmup-ms"]),
    sampleMs: Number(values["sample-ms"]),
  });
  console.log(JSON.stringify({ results, openKb } satisfies WorkerReport));
}
