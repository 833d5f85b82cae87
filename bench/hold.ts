/**
 * The hold benchmark (`deno task bench:hold`): how often a snapshot of the process views is
 * inconsistent while a workload churns, with and without the agent holding it still, and what
 * the hold costs the workload.
 *
 * A churning workload (`churn.c`: workers forking children and exiting, at a fixed rate, a
 * bounded number alive) runs in a cgroup made for the run (cgroup v2 where this machine has a
 * v2 hierarchy, else a v1 freezer; `--cgroup-version` chooses). A real agent started with
 * `--hold-cgroup` on it serves an IDS in this process; idle processes (outside the cgroup) grow
 * the list to `--processes`. Snapshots of `ps` (the task list, the pid IDR, the children lists)
 * are taken in each mode, held and not, interleaved. Each snapshot's inconsistencies are counted
 * from the IDS's own result (`hold_report.ts`), its hold as the agent measured it, and the
 * workload's fork rate from the workload's own count around the snapshot.
 *
 * Writes `bench/results/hold-<time>.json` and `.md`, and prints the table. Needs root (BPF and
 * cgroups), clang, and a freezer: it says which is missing.
 *
 * Usage: `deno task bench:hold [--processes 1000] [--reps 15] [--modes on-demand,prefetch]
 *   [--rate 500] [--max-alive 400] [--hold-ms 10000] [--settle-ms 1000] [--cgroup-version 1|2]
 *   [--out DIR]`
 *
 * @module
 */

import { parseArgs } from "node:util";
import { spawnAgent } from "../agent/mod.ts";
import { scanSections } from "../ids/detect/mod.ts";
import { type GuestSession, type Mode, MODES, openSession } from "../ids/client/mod.ts";
import { LIMITS } from "../protocol/mod.ts";
import {
  cannotMakeCgroup,
  freezerHierarchies,
  missingPrivilege,
  TestCgroup,
} from "../tests/support/mod.ts";
import {
  type HoldSample,
  type HoldSeries,
  inconsistencies,
  renderHoldTable,
  summariseSeries,
} from "./hold_report.ts";
import { loadavg, machine, processCount } from "./machine.ts";
import { Churn, IdleProcesses, startBench } from "./native.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    processes: { type: "string", default: "1000" },
    reps: { type: "string", default: "15" },
    modes: { type: "string", default: "on-demand,prefetch" },
    rate: { type: "string", default: "500" },
    "max-alive": { type: "string", default: "400" },
    "hold-ms": { type: "string", default: String(LIMITS.maxHoldMs) },
    "settle-ms": { type: "string", default: "1000" },
    "cgroup-version": { type: "string" },
    out: { type: "string", default: new URL("results/", import.meta.url).pathname },
  },
});

function positive(name: string, max = Number.MAX_SAFE_INTEGER): number {
  const text = values[name as keyof typeof values] as string;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1 || n > max) {
    throw new TypeError(`Invalid --${name} "${text}": expected an integer 1..${max}`);
  }
  return n;
}

const settings = {
  processes: positive("processes"),
  reps: positive("reps"),
  rate: positive("rate"),
  maxAlive: positive("max-alive"),
  holdMs: positive("hold-ms", LIMITS.maxHoldMs),
  settleMs: positive("settle-ms"),
  modes: values.modes.split(",") as Mode[],
};
for (const mode of settings.modes) {
  if (!MODES.includes(mode)) throw new TypeError(`Unknown mode "${mode}"`);
}

const log = (line: string) => console.error(`bench:hold: ${line}`);
const fail = (problem: string): never => {
  console.error(`bench:hold: cannot run: ${problem}`);
  Deno.exit(1);
};

// What the run needs, each said plainly when missing.
const privilege = missingPrivilege();
if (privilege) fail(`the agent ${privilege}`);
const wanted = values["cgroup-version"];
const hierarchies = freezerHierarchies().filter((h) => !wanted || String(h.version) === wanted);
if (!hierarchies.length) {
  fail(
    wanted
      ? `no cgroup v${wanted} ${wanted === "1" ? "freezer " : ""}hierarchy is mounted`
      : "no cgroup v2 hierarchy and no v1 freezer hierarchy is mounted: nothing can freeze",
  );
}
const problem = await cannotMakeCgroup(hierarchies[0]);
if (problem) fail(problem);
const hierarchy = hierarchies[0];

const startedAt = new Date();
const loadAtStart = loadavg();
log(`load average ${loadAtStart.join(" ")}; cgroup v${hierarchy.version} at ${hierarchy.mount}`);

await using bench = await startBench("ebpfmon-bench-hold-");
const { stack, tools, state } = bench;
const cgroup = stack.use(await TestCgroup.create(hierarchy, "bench-hold"));
const churn = stack.use(Churn.start(tools, settings.rate, settings.maxAlive));
await cgroup.add(churn.pid);
await churn.go();
const agent = stack.use(
  await spawnAgent({ stateDir: state, args: ["--hold-cgroup", cgroup.dir], log }),
);
log(`agent ${agent.pid} on ${agent.address}, holding ${cgroup.dir}`);
const idle = stack.use(IdleProcesses.start(tools));
const extra = Math.max(0, settings.processes - processCount());
await idle.resize(extra);
log(`${processCount()} processes (${extra} idle ones added)`);
const session = stack.use(await openSession({ agent: agent.address, state }));

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The workload's forks a second over `ms`, with no snapshot running. */
async function quietForkRate(ms: number): Promise<number> {
  const before = await churn.forks();
  const started = performance.now();
  await sleep(ms);
  return (await churn.forks() - before) / ((performance.now() - started) / 1000);
}

async function measure(s: GuestSession, mode: Mode, hold: boolean): Promise<HoldSample> {
  // A thawed workload's sleepers all wake at once and exit: it is back to its usual population
  // once its longest-lived processes (400 ms) have been replaced.
  await sleep(settings.settleMs);
  s.holdMs = hold ? settings.holdMs : undefined;
  const forksBefore = await churn.forks();
  const started = performance.now();
  const { scan, stats } = await scanSections(s, mode, ["processes"]);
  const forks = await churn.forks() - forksBefore;
  const wallS = (performance.now() - started) / 1000;
  const section = scan.sections.processes;
  if (!section?.supported) {
    throw new Error(`Cannot read the process views: ${section?.reason ?? "no section"}`);
  }
  const found = inconsistencies(section.value);
  return {
    ms: stats.ms,
    roundTrips: stats.roundTrips,
    hold: stats.hold?.state ?? "none",
    heldMs: stats.hold?.heldMs ?? 0,
    freezeMs: stats.hold?.freezeMs ?? 0,
    forkRate: forks / wallS,
    processes: section.value.processes.length,
    workload: found.workload,
    machine: found.machine,
    own: found.own,
    cleared: section.value.cleared,
    hidden: section.value.hidden.length,
    reasons: found.reasons.slice(0, 3),
  };
}

const quietBefore = await quietForkRate(2000);
log(`workload: ${quietBefore.toFixed(0)} forks/s with no snapshot running`);
const series: HoldSeries[] = settings.modes.flatMap((mode) =>
  [false, true].map((hold) => ({ mode, hold, samples: [] as HoldSample[] }))
);
// A warm-up of each series, then the series in turn, so each compares the same moments.
for (const s of series) await measure(session, s.mode, s.hold);
for (let rep = 0; rep < settings.reps; rep++) {
  for (const s of series) s.samples.push(await measure(session, s.mode, s.hold));
  const last = series.map((s) => s.samples.at(-1)!);
  log(
    `rep ${rep + 1}/${settings.reps}: ` +
      last.map((x, i) =>
        `${series[i].mode}${series[i].hold ? "+hold" : ""} ${x.ms.toFixed(0)} ms` +
        (x.hold === "held" ? ` (held ${x.heldMs.toFixed(0)})` : "")
      ).join(", "),
  );
}
const quietAfter = await quietForkRate(2000);
const loadAtEnd = loadavg();

const summaries = series.map(summariseSeries);
const results = {
  version: 1,
  startedAt: startedAt.toISOString(),
  wallS: (Date.now() - startedAt.getTime()) / 1000,
  machine: machine(),
  loadAverage: { start: loadAtStart, end: loadAtEnd },
  settings: { ...settings, cgroupVersion: hierarchy.version },
  workload: { quietForkRateBefore: quietBefore, quietForkRateAfter: quietAfter },
  summaries,
  series,
};

const table = renderHoldTable(summaries);
const markdown = [
  `# Holding the workload during a snapshot`,
  "",
  `${results.machine.description}, Deno ${results.machine.deno}. Run ${results.startedAt}, ` +
  `${(results.wallS / 60).toFixed(1)} min; load average ${loadAtStart.join(" ")} at the start, ` +
  `${loadAtEnd.join(" ")} at the end.`,
  "",
  `\`ps\` (task list, pid IDR, children lists) of ${settings.processes} processes, ` +
  `${settings.reps} snapshots per row after a warm-up, rows interleaved, ` +
  `${settings.settleMs} ms apart. Workload: ` +
  `${settings.rate} workers a second forking a child each, at most ${settings.maxAlive} alive, ` +
  `in a cgroup v${hierarchy.version}; ${quietBefore.toFixed(0)} forks/s with no snapshot ` +
  `running before, ${quietAfter.toFixed(0)} after. Holds capped at ${settings.holdMs} ms.`,
  "",
  table,
  "",
].join("\n");

const out = values.out.endsWith("/") ? values.out : `${values.out}/`;
await Deno.mkdir(out, { recursive: true });
const name = `hold-${startedAt.toISOString().replaceAll(":", "-")}`;
await Deno.writeTextFile(`${out}${name}.json`, JSON.stringify(results, null, 2) + "\n");
await Deno.writeTextFile(`${out}${name}.md`, markdown);
// `deno fmt --check` of the repository formats Markdown too: the committed report must pass it.
await new Deno.Command(Deno.execPath(), { args: ["fmt", "--quiet", `${out}${name}.md`] }).output();
console.log(table);
log(`wrote ${out}${name}.json and ${name}.md`);
