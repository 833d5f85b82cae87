/**
 * Measurements through the guest's forwarded link: the round-trip time of a small READ, and the
 * module list taken on demand against prefetch. Medians, after a warm-up; printed, never asserted.
 *
 * @module
 */

import type { GuestSession, Mode } from "../ids/client/mod.ts";

/** Options of the measurements. */
export interface MeasureOptions {
  /** Measured runs. @default 10 (READs: 5 times as many) */
  runs?: number;
  /** Runs first, not measured. @default 2 */
  warmup?: number;
}

/** The median of `values` (the mean of the middle two for an even count). */
export function median(values: number[]): number {
  if (values.length === 0) throw new RangeError("Cannot take the median of no values");
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Median milliseconds of a 64-byte READ (the agent's own task): one round trip each. */
export async function measureRtt(session: GuestSession, options: MeasureOptions = {}) {
  const runs = (options.runs ?? 10) * 5;
  const addr = session.space.fromKAddr(session.anchor);
  const times: number[] = [];
  for (let i = 0; i < (options.warmup ?? 2) + runs; i++) {
    const started = performance.now();
    await session.client.read(addr, 64);
    if (i >= (options.warmup ?? 2)) times.push(performance.now() - started);
  }
  return { medianMs: median(times), runs };
}

/** One mode's module-list snapshots. */
export interface ModeTimes {
  medianMs: number;
  roundTrips: number;
  bytes: number;
  modules: number;
}

/** The module list in prefetch and on-demand mode, alternating, and the ratio of their medians. */
export async function measureModules(session: GuestSession, options: MeasureOptions = {}) {
  const runs = options.runs ?? 10;
  const modes: Mode[] = ["prefetch", "on-demand"];
  const times = new Map<Mode, number[]>(modes.map((m) => [m, []]));
  const last = new Map<Mode, ModeTimes>();
  for (let i = 0; i < (options.warmup ?? 2) + runs; i++) {
    for (const mode of modes) {
      const { answer, stats } = await session.modules(mode);
      if (!answer.supported) throw new Error(`Cannot measure the module list: ${answer.reason}`);
      if (i < (options.warmup ?? 2)) continue;
      times.get(mode)!.push(stats.ms);
      last.set(mode, {
        medianMs: 0,
        roundTrips: stats.roundTrips,
        bytes: stats.bytes,
        modules: answer.modules.length,
      });
    }
  }
  const of = (mode: Mode): ModeTimes => ({
    ...last.get(mode)!,
    medianMs: median(times.get(mode)!),
  });
  const prefetch = of("prefetch");
  const onDemand = of("on-demand");
  return { runs, prefetch, onDemand, ratio: onDemand.medianMs / prefetch.medianMs };
}
