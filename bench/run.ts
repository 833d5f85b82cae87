/**
 * The benchmark (`deno task bench`, `deno task bench:quick`): a real agent and, for every point,
 * an IDS in its own process, over links of known round-trip time, with the guest's process list
 * grown to each asked size. Every view in every mode is measured side by side; the results go to
 * `bench/results/` as JSON, Markdown and an SVG chart, and the Markdown table to stdout.
 *
 * The full run takes 100, 1,000 and 10,000 processes over loopback and relays of 0.2 ms and 1 ms,
 * 10 repetitions per point after a warm-up of at least one snapshot and one second per mode
 * (fewer repetitions where the warm-up says they would not fit the budget per point and mode;
 * the notes say so). `--quick` takes the machine's own processes over
 * loopback and 0.2 ms, 3 repetitions, in seconds; it writes `quick.*` instead of `latest.*`.
 *
 * Needs root (the agent loads BPF) and clang (the relay and the idle processes are small C
 * helpers: timers of a Deno process cannot hold a chunk for 0.1 ms).
 *
 * Usage: `deno task bench [--quick] [--counts 100,1000,10000] [--rtts 0,0.2,1] [--reps 10]
 *   [--sample-s 1] [--budget-s 400] [--warmup-s 1] [--views processes] [--modes prefetch,on-demand]
 *   [--out bench/results]`
 *
 * @module
 */

import { parseArgs } from "node:util";
import { spawnAgent } from "../agent/mod.ts";
import { cpuSeconds, machine, processCount, processLimits, procMemory } from "./machine.ts";
import { type Mode, MODES } from "../ids/client/mod.ts";
import { renderChart } from "./chart.ts";
import { IDS_PERMISSIONS } from "../ids/cli/mod.ts";
import { DELTA, viewOf, VIEWS, type WorkerReport } from "./ids_worker.ts";
import { type Link, setUpLink } from "./link_setup.ts";
import { IdleProcesses, startBench, startProbeEndpoint } from "./native.ts";
import { renderMarkdown } from "./report.ts";
import {
  type BenchResults,
  compare,
  evaluateTargets,
  type PointResult,
  quantile,
  summarise,
} from "./results.ts";

const ROOT = new URL("..", import.meta.url);
const WORKER = new URL("./ids_worker.ts", import.meta.url);

const { values } = parseArgs({
  args: Deno.args,
  options: {
    quick: { type: "boolean", default: false },
    counts: { type: "string" },
    rtts: { type: "string" },
    reps: { type: "string" },
    "min-reps": { type: "string", default: "3" },
    "budget-s": { type: "string", default: "400" },
    "warmup-s": { type: "string", default: "1" },
    "sample-s": { type: "string", default: "1" },
    views: { type: "string", default: [...Object.keys(VIEWS), `processes${DELTA}`].join(",") },
    modes: { type: "string", default: MODES.join(",") },
    out: { type: "string", default: new URL("results/", import.meta.url).pathname },
  },
});

function numbers(text: string, name: string): number[] {
  const list = text.split(",").map(Number);
  if (list.some((n) => !Number.isFinite(n) || n < 0)) {
    throw new TypeError(`Invalid --${name} "${text}": expected numbers separated by commas`);
  }
  return list;
}

const quick = values.quick;
const rtts = numbers(values.rtts ?? (quick ? "0,0.2" : "0,0.2,1"), "rtts");
const reps = numbers(values.reps ?? (quick ? "3" : "10"), "reps")[0];
const minReps = Math.min(reps, numbers(values["min-reps"], "min-reps")[0]);
const budgetS = numbers(values["budget-s"], "budget-s")[0];
const warmupS = numbers(values["warmup-s"], "warmup-s")[0];
const sampleS = numbers(values["sample-s"], "sample-s")[0];
const views = values.views.split(",");
const modes = values.modes.split(",") as Mode[];
for (const view of views) if (!viewOf(view)) throw new TypeError(`Unknown view "${view}"`);
for (const mode of modes) if (!MODES.includes(mode)) throw new TypeError(`Unknown mode "${mode}"`);
if (!Number.isInteger(reps) || reps < 1) throw new TypeError(`Invalid --reps "${values.reps}"`);

/** The process list as the IDS will see it: this machine's processes and the IDS worker. */
const ownCount = () => processCount() + 1;
/** The counts asked for; none in `--quick`: the machine's own, once the agent runs. */
const asked = quick && !values.counts
  ? undefined
  : numbers(values.counts ?? "100,1000,10000", "counts").sort((a, b) => a - b);
const limits = processLimits();
if (asked && Math.max(...asked) + 2000 > limits.max) {
  throw new RangeError(
    `Cannot grow the process list to ${Math.max(...asked)}: ${limits.reason} allows ${limits.max}`,
  );
}

const startedAt = new Date();
const log = (line: string) => console.error(`bench: ${line}`);
const notes: string[] = [];
const points: PointResult[] = [];

await using bench = await startBench("ebpfmon-bench-");
const { stack, tools, state } = bench;
const agent = stack.use(await spawnAgent({ stateDir: state }));
log(`agent ${agent.pid} on ${agent.address}`);
const agentIdleMB = procMemory(agent.pid).rssKb * 1024 / 1e6;

const links: Link[] = [];
{
  await using endpoint = await startProbeEndpoint(tools);
  for (const rtt of rtts) {
    const link = stack.use(
      await setUpLink(tools, { agent: agent.port, probe: endpoint.port }, rtt),
    );
    const r = link.result;
    log(
      `link ${r.name}: RTT median ${r.rttMs.median.toFixed(3)} ms (p90 ${
        r.rttMs.p90.toFixed(3)
      }), ${r.bandwidthMBps.toFixed(0)} MB/s${r.holdUs === null ? "" : `, hold ${r.holdUs} µs`}`,
    );
    if (r.rttErrorPct !== null && Math.abs(r.rttErrorPct) > 10) {
      notes.push(
        `Link ${r.name}: the measured RTT (${r.rttMs.median.toFixed(3)} ms) is ${
          r.rttErrorPct.toFixed(0)
        }% off its target even with the relay's hold at ${r.holdUs} µs.`,
      );
    }
    links.push(link);
  }
}

const idle = stack.use(IdleProcesses.start(tools));
const counts = asked ?? [ownCount()];

async function runWorker(port: number): Promise<WorkerReport> {
  const args = [
    "run",
    "-A",
    // The heap the service runs with: its young generation decides how often garbage is swept.
    ...IDS_PERMISSIONS.filter((flag) => flag.startsWith("--v8-flags")),
    WORKER.href,
    ...["--agent", `127.0.0.1:${port}`, "--state", state, "--agent-pid", String(agent.pid)],
    ...["--views", views.join(","), "--modes", modes.join(",")],
    ...["--reps", String(reps), "--min-reps", String(minReps)],
    ...["--budget-ms", String(budgetS * 1000), "--warmup-ms", String(warmupS * 1000)],
    ...["--sample-ms", String(sampleS * 1000)],
  ];
  const { success, code, stdout } = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!success) throw new Error(`The IDS worker exited with status ${code}`);
  return JSON.parse(new TextDecoder().decode(stdout));
}

/**
 * Milliseconds `ps` takes to list every process with what the process view shows (pid, ppid,
 * uid, gid, comm, state), each run to the end of its output: what an agent reading /proc in the
 * guest would pay for the same list.
 */
async function psMs(): Promise<number> {
  const started = performance.now();
  const { success } = await new Deno.Command("ps", {
    args: ["-eo", "pid,ppid,uid,gid,comm,state"],
    stdout: "piped",
    stderr: "null",
  }).output();
  if (!success) throw new Error("ps failed");
  return performance.now() - started;
}

/** Runs of `ps` per process count, before and after the count's points each. */
const PS_REPS = 3;
const baselines: { processes: number; psMs: number; reps: number }[] = [];

/** The benchmark's long-lived processes, whose CPU time is its own. */
const ours = [agent.pid, idle.pid, ...links.flatMap((l) => l.pid ?? [])];

for (const count of counts) {
  const others = ownCount() - idle.count;
  const extra = Math.max(0, count - others);
  if (count < others) {
    notes.push(`${count} processes asked for, but the machine already had ${others}.`);
  }
  await idle.resize(extra);
  log(`${count} processes (${extra} idle ones added)`);
  const ps: number[] = [];
  for (let i = 0; i < PS_REPS; i++) ps.push(await psMs());
  for (const link of links) {
    const started = performance.now();
    const cpuBefore = cpuSeconds(ours);
    let report: WorkerReport;
    try {
      report = await runWorker(link.port);
    } catch (error) {
      const message = (error as Error).message;
      report = {
        results: views.flatMap((view) =>
          modes.map((mode) => ({ view, mode, warmupMs: null, samples: [], error: message }))
        ),
        openKb: NaN,
      };
    }
    const cpuAfter = cpuSeconds(ours);
    const wallS = (performance.now() - started) / 1000;
    const otherCpuPct = Math.max(
      0,
      (cpuAfter.machine - cpuBefore.machine - (cpuAfter.ours - cpuBefore.ours)) /
        (wallS * navigator.hardwareConcurrency) * 100,
    );
    for (const view of views) {
      const mine = report.results.filter((r) => r.view === view)
        .map((r) => ({
          ...summarise(r, { processes: count, link: link.result, openKb: report.openKb }),
          otherCpuPct,
        }));
      compare(mine, link.result);
      points.push(...mine);
      log(
        `  ${view}, ${link.result.name}: ` + mine.map((p) =>
          `${p.mode} ${p.medianMs?.toFixed(2) ?? "failed"} ms` +
          (p.error ? ` (${p.error})` : "")
        ).join(", ") + ` [${wallS.toFixed(0)} s, others ${otherCpuPct.toFixed(0)}% CPU]`,
      );
    }
  }
  for (let i = 0; i < PS_REPS; i++) ps.push(await psMs());
  baselines.push({ processes: count, psMs: quantile(ps, 0.5), reps: ps.length });
  log(`  ps: ${quantile(ps, 0.5).toFixed(1)} ms (median of ${ps.length})`);
}

const results: BenchResults = {
  version: 1,
  quick,
  startedAt: startedAt.toISOString(),
  wallS: (Date.now() - startedAt.getTime()) / 1000,
  machine: machine(),
  settings: { counts, rttsMs: rtts, views, modes, reps, minReps, budgetS, warmupS, sampleS },
  links: links.map((l) => l.result),
  points,
  baselines,
  agentIdleMB,
  targets: evaluateTargets(points, links.map((l) => l.result), { baselines, agentIdleMB }),
  notes,
};

const out = values.out.endsWith("/") ? values.out : `${values.out}/`;
await Deno.mkdir(out, { recursive: true });
const name = quick ? "quick" : "latest";
const json = JSON.stringify(results, null, 2) + "\n";
if (!quick) {
  await Deno.writeTextFile(`${out}${startedAt.toISOString().replaceAll(":", "-")}.json`, json);
}
await Deno.writeTextFile(`${out}${name}.json`, json);
await Deno.writeTextFile(`${out}${name}.svg`, renderChart(results));
// `deno fmt --check` of the repository formats SVG too: the committed chart must pass it.
await new Deno.Command(Deno.execPath(), {
  args: ["fmt", "--quiet", `${out}${name}.svg`],
  cwd: ROOT,
}).output();
const markdown = renderMarkdown(results, `${name}.svg`);
await Deno.writeTextFile(`${out}${name}.md`, markdown);
console.log(renderMarkdown(results));
log(`wrote ${out}${name}.json, ${name}.md and ${name}.svg`);
