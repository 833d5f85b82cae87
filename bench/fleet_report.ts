/**
 * What `bench:fleet` makes of its arguments and of what it measured: its settings (checked), how
 * guest entries are spread over the agents, each phase's summary (CPU, RSS, refreshes done
 * against the 1 Hz schedule, how late they were), and the Markdown table.
 *
 * Lateness is read from the service's own refresh records (`GET /v1/vms/{vm}/stats`, `recent`):
 * - `lateMs`, the service's own: how long after it was due a refresh of a guest's loop started
 *   (due one `refreshMs` after the previous refresh ended). Only a busy service is late so.
 * - the cadence: the time from one refresh's start to the next's, minus `refreshMs`. The loop
 *   waits `refreshMs` after a refresh ends, so this is the previous refresh's whole duration plus
 *   its `lateMs`: how much later than a fixed 1/`refreshMs` schedule each refresh came. The
 *   target is that none is later than one interval.
 *
 * @module
 */

import { quantile } from "./results.ts";

/** How a phase's service asks its prefetches: deltas (the service's default) or all whole. */
export const PHASES = ["delta", "full"] as const;
/** One of {@linkcode PHASES}. */
export type Phase = typeof PHASES[number];

/** The benchmark's settings. */
export interface FleetSettings {
  guests: number;
  agents: number;
  processes: number;
  refreshMs: number;
  /** Seconds each phase is measured, once every guest is up and warmed up. */
  durationS: number;
  /** Seconds between every guest being up and the start of the measurement. */
  warmupS: number;
  phases: Phase[];
  /** Times the phases are run, alternated. */
  rounds: number;
  ringMb: number;
  out: string;
}

/** The arguments of `bench:fleet`, as `node:util`'s `parseArgs` gives them. */
export interface FleetArgs {
  guests: string;
  agents: string;
  processes: string;
  "refresh-ms": string;
  duration: string;
  warmup: string;
  phases: string;
  rounds: string;
  "ring-mb": string;
  out: string;
}

function integer(args: FleetArgs, name: keyof FleetArgs, min: number, max: number): number {
  const n = Number(args[name]);
  if (!/^\d+$/.test(args[name]) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new TypeError(`Invalid --${name} "${args[name]}": expected an integer ${min}..${max}`);
  }
  return n;
}

/**
 * The settings the arguments ask for.
 * @throws {TypeError} naming the bad argument.
 */
export function fleetSettings(args: FleetArgs): FleetSettings {
  const guests = integer(args, "guests", 1, 1000);
  const agents = integer(args, "agents", 1, 1000);
  if (agents > guests) {
    throw new TypeError(`Invalid --agents "${args.agents}": more agents than the ${guests} guests`);
  }
  const ringMb = integer(args, "ring-mb", 1, 1024);
  if ((ringMb & (ringMb - 1)) !== 0) {
    throw new TypeError(`Invalid --ring-mb "${args["ring-mb"]}": expected a power of two`);
  }
  const phases = args.phases.split(",");
  for (const phase of phases) {
    if (!(PHASES as readonly string[]).includes(phase)) {
      throw new TypeError(
        `Invalid --phases "${args.phases}": "${phase}" is not one of ${PHASES.join(", ")}`,
      );
    }
  }
  return {
    guests,
    agents,
    processes: integer(args, "processes", 1, 100_000),
    refreshMs: integer(args, "refresh-ms", 100, 86_400_000),
    durationS: integer(args, "duration", 1, 3600),
    warmupS: integer(args, "warmup", 0, 600),
    phases: phases as Phase[],
    rounds: integer(args, "rounds", 1, 100),
    ringMb,
    out: args.out,
  };
}

/** Which agent serves guest `i` of `guests`: round robin, so no agent has two more than another. */
export function agentOf(i: number, agents: number): number {
  return i % agents;
}

/** One refresh as the service recorded it (a `FetchRecord` of the processes view). */
export interface RefreshRecord {
  at: number;
  ms: number;
  ok: boolean;
  bytes: number;
  roundTrips: number;
  lateMs?: number;
}

/** What one phase measured. */
export interface PhaseMeasure {
  phase: Phase;
  round: number;
  guests: number;
  refreshMs: number;
  /** The window measured, epoch ms. */
  from: number;
  to: number;
  /** CPU seconds (user + system) of the service over the window. */
  cpuS: number;
  /** CPU seconds of all the agents over the window. */
  agentCpuS: number;
  /** CPU seconds of the whole machine (every core, every process) over the window. */
  machineCpuS: number;
  /** VmRSS samples of the service over the window, in bytes. */
  rss: number[];
  /** The service's VmHWM at the end of the window (its peak since it started), in bytes. */
  hwm: number;
  /** Seconds from starting the service to every guest having a snapshot (or giving up). */
  upS: number;
  /** Guests up with a snapshot at the start and at the end of the window. */
  up: { start: number; end: number };
  /** By guest: its loop's refreshes, oldest first (those before the window too). */
  records: RefreshRecord[][];
  /** Lines the service logged during the window. */
  logLines: number;
  processes: { start: number; end: number };
}

/** The p50, p99 and maximum of `values` (NaN when there are none). */
function spread(values: number[]) {
  return { p50: quantile(values, 0.5), p99: quantile(values, 0.99), max: Math.max(...values) };
}

/** What a phase comes to. */
export function summarisePhase(m: PhaseMeasure) {
  const seconds = (m.to - m.from) / 1000;
  const late: number[] = [];
  const cadence: number[] = [];
  const durations: number[] = [];
  const bytes: number[] = [];
  let done = 0;
  let failed = 0;
  for (const records of m.records) {
    records.forEach((r, i) => {
      const inWindow = r.at >= m.from && r.at < m.to;
      const next = records[i + 1];
      // The refresh's whole duration: the next one was due refreshMs after it ended.
      if (inWindow && r.ok && next?.lateMs !== undefined) {
        durations.push(next.at - next.lateMs - m.refreshMs - r.at);
      }
      if (!inWindow) return;
      done++;
      if (r.ok) bytes.push(r.bytes);
      else failed++;
      if (r.lateMs !== undefined) late.push(r.lateMs);
      const previous = records[i - 1];
      if (previous && r.lateMs !== undefined) cadence.push(r.at - previous.at - m.refreshMs);
    });
  }
  const rss = m.rss.length ? m.rss : [NaN];
  return {
    phase: m.phase,
    round: m.round,
    guests: m.guests,
    refreshMs: m.refreshMs,
    seconds,
    /** Refreshes a fixed 1/refreshMs schedule would have started in the window. */
    expected: Math.round(m.guests * seconds * 1000 / m.refreshMs),
    done,
    failed,
    up: m.up,
    /** Share of one core the service used. */
    cpu: m.cpuS / seconds,
    agentCpu: m.agentCpuS / seconds,
    /** Cores the whole machine kept busy. */
    machineCpu: m.machineCpuS / seconds,
    rssMaxMB: Math.max(...rss) / 2 ** 20,
    rssMedianMB: quantile(rss, 0.5) / 2 ** 20,
    hwmMB: m.hwm / 2 ** 20,
    upS: m.upS,
    lateMs: spread(late),
    cadenceMs: spread(cadence),
    /** Refreshes that came more than one interval later than the fixed schedule. */
    overInterval: cadence.filter((c) => c > m.refreshMs).length,
    durationMs: spread(durations),
    medianKB: quantile(bytes, 0.5) / 1024,
    logLines: m.logLines,
    processes: m.processes,
  };
}

/** One phase's summary. */
export type PhaseSummary = ReturnType<typeof summarisePhase>;

function fmt(n: number, digits = 1): string {
  if (!Number.isFinite(n)) return "-";
  return Math.abs(n) >= 100 ? n.toFixed(0) : n.toFixed(digits);
}

/** The report's table, one row per phase run. */
export function renderFleetTable(summaries: PhaseSummary[]): string {
  const header = [
    "phase",
    "guests",
    "up (start / end)",
    "processes",
    "CPU (% of a core)",
    "agents' CPU",
    "machine CPU (cores)",
    "RSS max MB",
    "VmHWM MB",
    "refreshes done / expected",
    "failed",
    "late ms p50 / p99 / max",
    "after schedule ms p50 / p99 / max",
    "> 1 interval",
    "refresh ms p50 / p99",
    "KB / ok refresh",
  ];
  const triple = (s: { p50: number; p99: number; max: number }) =>
    `${fmt(s.p50)} / ${fmt(s.p99)} / ${fmt(s.max)}`;
  const rows = summaries.map((s) => [
    s.phase,
    String(s.guests),
    `${s.up.start} / ${s.up.end}`,
    s.processes.start === s.processes.end
      ? String(s.processes.start)
      : `${s.processes.start}-${s.processes.end}`,
    `${(s.cpu * 100).toFixed(0)}%`,
    `${(s.agentCpu * 100).toFixed(0)}%`,
    fmt(s.machineCpu, 2),
    fmt(s.rssMaxMB, 0),
    fmt(s.hwmMB, 0),
    `${s.done} / ${s.expected}`,
    String(s.failed),
    triple(s.lateMs),
    triple(s.cadenceMs),
    String(s.overInterval),
    `${fmt(s.durationMs.p50)} / ${fmt(s.durationMs.p99)}`,
    fmt(s.medianKB),
  ]);
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}
