/**
 * The benchmark's results: the JSON schema (checked by the test of `--quick`), how raw samples
 * become a point, the limit estimate, and the targets of the issue evaluated on them.
 *
 * @module
 */

import { z } from "zod";
import type { ModeReport } from "./ids_worker.ts";

/** One link setting, as measured by the probe (not as claimed). */
export const LinkResult = z.object({
  /** "loopback", "0.2 ms", ... */
  name: z.string(),
  /** The round-trip time the link claims; 0 for loopback (no relay). */
  targetRttMs: z.number(),
  /** Microseconds the relay holds each chunk in each direction; null without a relay. */
  holdUs: z.number().nullable(),
  /** One-byte ping-pong through the link. */
  rttMs: z.object({ median: z.number().positive(), p90: z.number().positive() }),
  /** (median - target) / target, in percent; null for loopback. */
  rttErrorPct: z.number().nullable(),
  /** Bulk transfers through the link (the median of 5), in 10^6 bytes per second. */
  bandwidthMBps: z.number().positive(),
});
export type LinkResult = z.infer<typeof LinkResult>;

const nullableNumber = z.number().nullable();

/** One view at one process count, over one link, in one mode. */
export const PointResult = z.object({
  view: z.string(),
  /** The process count asked for (the machine's own in `--quick`). */
  processes: z.number().int().positive(),
  /** What the view returned (median over the samples). */
  items: nullableNumber,
  link: z.string(),
  rttMs: z.number(),
  mode: z.string(),
  reps: z.number().int().nonnegative(),
  note: z.string().nullable(),
  error: z.string().nullable(),
  warmupMs: nullableNumber,
  medianMs: nullableNumber,
  p90Ms: nullableNumber,
  roundTrips: nullableNumber,
  bytes: nullableNumber,
  /** In-guest walk (prefetch modes). */
  guestMs: nullableNumber,
  /** Agent: request to END (prefetch modes). */
  agentMs: nullableNumber,
  idsCpuMs: nullableNumber,
  /** Resident memory of the IDS once its session was open (BTF parsed), before any snapshot. */
  idsOpenMB: nullableNumber.optional(),
  /** Resident memory of the IDS when a snapshot starts (median over the samples). */
  idsBaseMB: nullableNumber,
  /** Highest over the samples. */
  idsPeakMB: nullableNumber,
  agentPeakMB: nullableNumber,
  /** On-demand median / this median, measured in the same run. */
  speedup: nullableNumber,
  /** One RTT + in-guest walk + bytes / link bandwidth (prefetch modes). */
  limitMs: nullableNumber,
  /** medianMs / limitMs. */
  limitRatio: nullableNumber,
  truncated: z.boolean(),
  misses: nullableNumber,
  /**
   * CPU time that processes other than the benchmark's used while this point ran, as a
   * percentage of the machine's CPU time (the same for every mode of a point).
   */
  otherCpuPct: nullableNumber,
  samplesMs: z.array(z.number()),
});
export type PointResult = z.infer<typeof PointResult>;

/** One target of the issue and whether this run met it (null: not measured in this run). */
export const TargetResult = z.object({
  name: z.string(),
  value: nullableNumber,
  unit: z.string(),
  met: z.boolean().nullable(),
  detail: z.string(),
});
export type TargetResult = z.infer<typeof TargetResult>;

export const BenchResults = z.object({
  version: z.literal(1),
  quick: z.boolean(),
  startedAt: z.string(),
  wallS: z.number(),
  machine: z.object({
    description: z.string(),
    cpu: z.string(),
    cores: z.number().int().positive(),
    memoryGiB: z.number(),
    kernel: z.string(),
    deno: z.string(),
  }),
  settings: z.object({
    counts: z.array(z.number().int().positive()),
    rttsMs: z.array(z.number().nonnegative()),
    views: z.array(z.string()),
    modes: z.array(z.string()),
    reps: z.number().int().positive(),
    minReps: z.number().int().positive(),
    budgetS: z.number().positive(),
    warmupS: z.number().nonnegative(),
    /** Each mode's snapshots cover at least this long (more repetitions at fast points). */
    sampleS: z.number().nonnegative().optional(),
  }),
  links: z.array(LinkResult),
  points: z.array(PointResult),
  /** The same process list by `ps` reading /proc, at each count: median ms of `reps` runs. */
  baselines: z.array(z.object({
    processes: z.number().int().positive(),
    psMs: z.number().positive(),
    reps: z.number().int().positive(),
  })).optional(),
  /** Resident memory of the agent right after it started, before any request. */
  agentIdleMB: nullableNumber.optional(),
  targets: z.array(TargetResult),
  notes: z.array(z.string()),
});
export type BenchResults = z.infer<typeof BenchResults>;

/** The q-quantile of `values` (nearest rank); NaN for none. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

function orNull(value: number): number | null {
  return Number.isFinite(value) ? value : null;
}

/** Summarises one worker report into a point, without the comparisons (see {@linkcode compare}). */
export function summarise(
  report: ModeReport,
  at: { processes: number; link: LinkResult; openKb?: number },
): PointResult {
  const s = report.samples;
  const median = (pick: (x: (typeof s)[number]) => number | null) => {
    const xs = s.map(pick).filter((x): x is number => x !== null);
    return orNull(quantile(xs, 0.5));
  };
  const max = (pick: (x: (typeof s)[number]) => number) => orNull(Math.max(...s.map(pick)));
  return {
    view: report.view,
    processes: at.processes,
    items: median((x) => x.items),
    link: at.link.name,
    rttMs: at.link.targetRttMs,
    mode: report.mode,
    reps: s.length,
    note: report.note ?? null,
    error: report.error ?? null,
    warmupMs: report.warmupMs,
    medianMs: median((x) => x.ms),
    p90Ms: orNull(quantile(s.map((x) => x.ms), 0.9)),
    roundTrips: median((x) => x.roundTrips),
    bytes: median((x) => x.bytes),
    guestMs: median((x) => x.guestMs),
    agentMs: median((x) => x.agentMs),
    idsCpuMs: median((x) => x.idsCpuMs),
    idsOpenMB: at.openKb === undefined ? null : orNull(at.openKb * 1024 / 1e6),
    idsBaseMB: median((x) => x.idsBaseKb * 1024 / 1e6),
    idsPeakMB: max((x) => x.idsPeakKb * 1024 / 1e6),
    agentPeakMB: max((x) => x.agentPeakKb * 1024 / 1e6),
    speedup: null,
    limitMs: null,
    limitRatio: null,
    truncated: s.some((x) => x.truncated),
    misses: median((x) => x.misses),
    otherCpuPct: null,
    samplesMs: s.map((x) => Math.round(x.ms * 1000) / 1000),
  };
}

/**
 * Fills in the side-by-side comparisons of the points of one view, count and link: each mode's
 * speedup over on-demand, and for the prefetch modes the limit estimate.
 */
export function compare(points: PointResult[], link: LinkResult): void {
  const baseline = points.find((p) => p.mode === "on-demand")?.medianMs ?? null;
  const bytesPerMs = link.bandwidthMBps * 1e3;
  for (const p of points) {
    if (p.medianMs === null) continue;
    if (baseline !== null) p.speedup = baseline / p.medianMs;
    if (p.guestMs !== null && p.bytes !== null) {
      p.limitMs = link.rttMs.median + p.guestMs + p.bytes / bytesPerMs;
      p.limitRatio = p.medianMs / p.limitMs;
    }
  }
}

const BATCHED = "prefetch";

/** What a run measured besides its points: `ps` at each count, the agent at rest. */
export interface Extras {
  baselines?: { processes: number; psMs: number }[];
  agentIdleMB?: number | null;
}

/** The targets of the issues, evaluated on the points of one run. */
export function evaluateTargets(
  points: PointResult[],
  links: LinkResult[],
  extras: Extras = {},
): TargetResult[] {
  const loopback = links.find((l) => l.targetRttMs === 0)?.targetRttMs ?? 0;
  const at = (processes: number, rttMs: number, mode = BATCHED, view = "processes") =>
    points.find((p) =>
      p.view === view && p.mode === mode && p.processes === processes && p.rttMs === rttMs
    );
  const measured = (value: number | null | undefined, limit: number, atMost: boolean) =>
    value === null || value === undefined || Number.isNaN(value)
      ? { value: null, met: null }
      : { value, met: atMost ? value <= limit : value >= limit };
  const where = (p: PointResult | undefined) =>
    p ? `${p.view}, ${p.processes} processes, ${p.link}` : "not measured in this run";
  /** The point of `list` with the largest `key`. */
  const worstOf = <T>(list: T[], key: (x: T) => number) =>
    list.reduce<T | undefined>((w, x) => (w && key(w) >= key(x) ? w : x), undefined);
  const small = at(100, 0.2);
  const large = at(10_000, loopback);
  const largeSelective = at(10_000, loopback, "selective");
  const worstLimit = worstOf(
    points.filter((p) => p.mode === BATCHED && p.limitRatio !== null && !p.view.includes(":")),
    (p) => p.limitRatio!,
  );
  // A full check beside the process list alone, at the same count and link.
  const checks = points.filter((p) => p.view === "check" && p.mode === BATCHED).flatMap((c) => {
    const list = at(c.processes, c.rttMs);
    return c.medianMs !== null && list?.medianMs ? [{ c, ratio: c.medianMs / list.medianMs }] : [];
  });
  const worstCheck = worstOf(checks, (x) => x.ratio);
  const mostTrips = worstOf(checks.map((x) => x.c), (c) => c.roundTrips ?? 0);
  // A delta refresh beside the whole snapshot it follows, at the same point.
  const deltas = points.filter((p) => p.view === "processes:delta" && p.mode === BATCHED)
    .flatMap((d) => {
      const whole = at(d.processes, d.rttMs);
      return d.bytes !== null && whole?.bytes ? [{ d, share: d.bytes / whole.bytes * 100 }] : [];
    });
  const worstDelta = worstOf(deltas, (x) => x.share);
  const ps = extras.baselines?.find((b) => b.processes === 10_000);
  const opened = worstOf(points.filter((p) => (p.idsOpenMB ?? null) !== null), (p) => p.idsOpenMB!);
  const agentPeak = worstOf(
    points.filter((p) => p.processes === 10_000 && p.agentPeakMB !== null),
    (p) => p.agentPeakMB!,
  );
  return [
    {
      name: "a full check (every rule) costs at most 3x the process list alone at every point",
      unit: "x",
      ...measured(worstCheck?.ratio, 3, true),
      detail: worstCheck
        ? `check / processes, batched prefetch medians, worst point: ${where(worstCheck.c)}`
        : where(undefined),
    },
    {
      name: "a full check of a quiet guest is one round trip",
      unit: "round trips",
      ...measured(mostTrips?.roundTrips, 1, true),
      detail: mostTrips ? `most, median per point: ${where(mostTrips)}` : where(undefined),
    },
    {
      name: "100 processes at 0.2 ms RTT: batched prefetch at least 20x faster than on-demand",
      unit: "x",
      ...measured(small?.speedup, 20, false),
      detail: small ? `on-demand / prefetch, medians, ${where(small)}` : where(small),
    },
    {
      name: "10,000 processes on loopback: the process list by batched prefetch in at most 50 ms",
      unit: "ms",
      ...measured(large?.medianMs, 50, true),
      detail: large ? `median, whole snapshots, ${where(large)}` : where(large),
    },
    {
      name: "10,000 processes on loopback: the process list by selective prefetch in at most 40 ms",
      unit: "ms",
      ...measured(largeSelective?.medianMs, 40, true),
      detail: largeSelective
        ? `median, whole snapshots, ${where(largeSelective)}`
        : where(largeSelective),
    },
    {
      name: "10,000 processes: the process list at least 5x faster than ps reading /proc",
      unit: "x",
      ...measured(ps && large?.medianMs ? ps.psMs / large.medianMs : undefined, 5, false),
      detail: ps && large
        ? `ps ${ps.psMs.toFixed(0)} ms / batched prefetch median, ${where(large)}`
        : where(undefined),
    },
    {
      name: "batched prefetch within 2x of the limit estimate at every point",
      unit: "x",
      ...measured(worstLimit?.limitRatio, 2, true),
      detail: worstLimit ? `worst point: ${where(worstLimit)}` : where(worstLimit),
    },
    {
      name: "IDS RSS before the first snapshot (BTF parsed) at most 120 MB",
      unit: "MB",
      ...measured(opened?.idsOpenMB, 120, true),
      detail: opened ? `highest over the IDS processes, ${where(opened)}` : where(undefined),
    },
    {
      name: "10,000 processes: IDS peak RSS at most 200 MB",
      unit: "MB",
      ...measured(large?.idsPeakMB, 200, true),
      detail: large ? `batched prefetch, highest over the samples, ${where(large)}` : where(large),
    },
    {
      name: "agent RSS idle at most 64 MB",
      unit: "MB",
      ...measured(extras.agentIdleMB, 64, true),
      detail: "right after it started, before any request",
    },
    {
      name: "10,000 processes: agent peak RSS at most 128 MB",
      unit: "MB",
      ...measured(agentPeak?.agentPeakMB, 128, true),
      detail: agentPeak
        ? `highest over the samples, ${where(agentPeak)}, ${agentPeak.mode}`
        : where(undefined),
    },
    {
      name: "a second snapshot when nothing changed carries at most 5% of the bytes of the first",
      unit: "%",
      ...measured(worstDelta?.share, 5, true),
      detail: worstDelta
        ? `delta / whole bytes, batched prefetch medians, worst point: ${where(worstDelta.d)}`
        : where(undefined),
    },
  ];
}
