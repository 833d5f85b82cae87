/**
 * Side-by-side measurement of the two modes on this machine's process list: starts a local
 * agent, runs each mode `--runs` times (after one warm-up) alternating between modes, and
 * prints round trips, bytes and median / p90 milliseconds per mode, and the on-demand/prefetch
 * ratio of the medians.
 *
 * Usage: `deno task bench:modes [--runs 20] [--json]`
 *
 * @module
 */

import { parseArgs } from "node:util";
import { spawnAgent } from "../agent/process.ts";
import { formatTable, openSession } from "../ids/cli.ts";
import { type Mode, MODES, type SnapshotStats } from "../ids/session.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { runs: { type: "string", default: "20" }, json: { type: "boolean", default: false } },
});
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) throw new TypeError(`Invalid --runs "${values.runs}"`);

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

const state = await Deno.makeTempDir({ prefix: "ebpfmon-bench-" });
await using agent = await spawnAgent({ stateDir: state });
using session = await openSession({ agent: agent.address, state });

const samples = new Map<Mode, SnapshotStats[]>(MODES.map((m) => [m, []]));
let processes = 0;
for (let i = -1; i < runs; i++) {
  for (const mode of MODES) {
    const { processes: list, stats } = await session.processes(mode);
    processes = list.length;
    if (i >= 0) samples.get(mode)!.push(stats);
  }
}

const summary = MODES.map((mode) => {
  const s = samples.get(mode)!;
  const ms = s.map((x) => x.ms).sort((a, b) => a - b);
  const median = (xs: number[]) => quantile([...xs].sort((a, b) => a - b), 0.5);
  return {
    mode,
    roundTrips: median(s.map((x) => x.roundTrips)),
    bytes: median(s.map((x) => x.bytes)),
    medianMs: quantile(ms, 0.5),
    p90Ms: quantile(ms, 0.9),
    guestMs: s[0].prefetch ? median(s.map((x) => x.prefetch!.guestMs)) : undefined,
  };
});
const [prefetch, onDemand] = summary;
const ratio = onDemand.medianMs / prefetch.medianMs;

if (values.json) {
  console.log(JSON.stringify({ processes, runs, summary, ratio }, null, 2));
} else {
  console.log(`process list of this machine: ${processes} processes, ${runs} runs per mode\n`);
  console.log(formatTable(
    ["mode", "round trips", "bytes", "median ms", "p90 ms", "in-guest ms"],
    summary.map((s) => [
      s.mode,
      String(s.roundTrips),
      String(s.bytes),
      s.medianMs.toFixed(2),
      s.p90Ms.toFixed(2),
      s.guestMs?.toFixed(3) ?? "-",
    ]),
    new Set([1, 2, 3, 4, 5]),
  ));
  console.log(`\non-demand / prefetch (median): ${ratio.toFixed(1)}x`);
}
