/**
 * The many-guests benchmark (`deno task bench:fleet`): one IDS service (`ids/main.ts serve`, its
 * own process, with the service's permissions and V8 flags) refreshing many guest entries, and
 * what that costs it: its CPU (user + system, as a share of one core), its RSS, and how late its
 * refreshes come (`fleet_report.ts` says how lateness is read).
 *
 * The guests are this machine, grown to `--processes` with idle processes: `--agents` real
 * agents, each with its own enrolled identity, serve `--guests` guest entries between them (round
 * robin; each entry is its own connection to its agent, with its own walker, pinned by that
 * agent's certificate with `sharedPin`). Each phase has a service and agents of its own, with
 * state directories of their own. Its agents are started one after the other, each once the
 * guests of the one before are up (see `_fleet_phase.ts`); then `--warmup` seconds pass, and
 * `--duration` seconds are measured. Phases: `delta` (the service's default: after a
 * connection's first, its prefetches are deltas, one in `fullEvery` whole) and `full`
 * (`"fullEvery": 1`), alternated `--rounds` times.
 *
 * An agent verifies and loads the walkers of its connections one at a time (0.5-3 s each on this
 * busy 2-core machine), and the service gives up on a LOAD not done within 10 s: the default of 5
 * guest entries an agent (20 agents) keeps each agent's queue short enough.
 *
 * Writes `bench/results/fleet-<time>.json` and `.md`, and prints the table. Needs root (BPF) and
 * clang.
 *
 * Usage: `deno task bench:fleet [--guests 100] [--agents 20] [--processes 500]
 *   [--refresh-ms 1000] [--duration 60] [--warmup 5] [--phases delta,full] [--rounds 1]
 *   [--ring-mb 8] [--out DIR]`
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type AgentProcess, spawnAgent } from "../agent/mod.ts";
import { enrollGuest } from "../protocol/mod.ts";
import { missingPrivilege } from "../tests/support/mod.ts";
import { AGENT_UP_TIMEOUT_S, type Fleet, runPhase } from "./_fleet_phase.ts";
import {
  fleetSettings,
  type PhaseMeasure,
  renderFleetTable,
  summarisePhase,
} from "./fleet_report.ts";
import { loadavg, machine, processCount } from "./machine.ts";
import { IdleProcesses, startBench } from "./native.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    guests: { type: "string", default: "100" },
    agents: { type: "string", default: "20" },
    processes: { type: "string", default: "500" },
    "refresh-ms": { type: "string", default: "1000" },
    duration: { type: "string", default: "60" },
    warmup: { type: "string", default: "5" },
    phases: { type: "string", default: "delta,full" },
    rounds: { type: "string", default: "1" },
    "ring-mb": { type: "string", default: "8" },
    out: { type: "string", default: new URL("results/", import.meta.url).pathname },
  },
});

const log = (line: string) => console.error(`bench:fleet: ${line}`);
const fail = (problem: string): never => {
  console.error(`bench:fleet: cannot run: ${problem}`);
  Deno.exit(1);
};

const settings = (() => {
  try {
    return fleetSettings(values);
  } catch (error) {
    return fail((error as Error).message);
  }
})();
const privilege = missingPrivilege();
if (privilege) fail(`the agent ${privilege}`);

const startedAt = new Date();
const loadAtStart = loadavg();
log(`load average ${loadAtStart.join(" ")}; ${processCount()} processes on the machine`);

await using bench = await startBench("ebpfmon-bench-fleet-");
const { stack, tools, state } = bench;
const idle = stack.use(IdleProcesses.start(tools));

/**
 * Grows the machine to `--processes` with idle processes, as many as the others running leave
 * to add (they come and go: called before each phase). Resolves to the count reached.
 */
async function grow(): Promise<number> {
  await idle.resize(Math.max(0, settings.processes - (processCount() - idle.count)));
  const count = processCount();
  log(`${count} processes (${idle.count} idle ones added)`);
  if (count > settings.processes * 1.1) {
    log(`more processes than the ${settings.processes} asked for: others run on this machine`);
  }
  return count;
}

// Each agent its own identity, enrolled by the IDS's state; each guest entry pins its agent's.
const ids = `${state}/ids`;
const perAgent = Math.ceil(settings.guests / settings.agents);
const identities: { dir: string; certificate: string }[] = [];
for (let k = 0; k < settings.agents; k++) {
  identities.push(await enrollGuest(ids, `agent-${k}`, `${state}/agent-${k}`));
}

/** Starts agent `k` on `port`. */
function startAgent(k: number, port: number): Promise<AgentProcess> {
  return spawnAgent({
    stateDir: identities[k].dir,
    listen: `127.0.0.1:${port}`,
    // The service loads its own walker on each connection: none of the agent's own.
    args: [
      "--no-default-object",
      "--max-connections",
      String(perAgent + 2),
      "--max-objects",
      String(perAgent + 2),
      "--ring-mb",
      String(settings.ringMb),
    ],
    // Each guest entry's connection loads and unloads its walker: said once a connection.
    log: (line) => {
      if (!/ (loaded an object|unloaded \d+ object)/.test(line)) log(`agent-${k}: ${line}`);
    },
  });
}

/** The guest entries' names, in configuration order. */
const names = Array.from(
  { length: settings.guests },
  (_, i) => `guest-${String(i).padStart(3, "0")}`,
);

const fleet: Fleet = { settings, state, ids, identities, names, stack, grow, startAgent, log };

const measures: PhaseMeasure[] = [];
for (let round = 1; round <= settings.rounds; round++) {
  for (const phase of settings.phases) {
    const measure = await runPhase(fleet, phase, round).catch(async (error) => {
      // Interrupted: the service it measured is gone; wait for the rest to stop.
      await bench.interrupted();
      throw error;
    });
    measures.push(measure);
    const s = summarisePhase(measure);
    log(
      `${phase} ${round}: CPU ${(s.cpu * 100).toFixed(0)}% of a core, RSS max ` +
        `${s.rssMaxMB.toFixed(0)} MB, ${s.done}/${s.expected} refreshes, late p99 ` +
        `${s.lateMs.p99.toFixed(0)} ms, after schedule p99 ${s.cadenceMs.p99.toFixed(0)} ms`,
    );
  }
}
const loadAtEnd = loadavg();

const summaries = measures.map(summarisePhase);
const results = {
  version: 1,
  startedAt: startedAt.toISOString(),
  wallS: (Date.now() - startedAt.getTime()) / 1000,
  machine: machine(),
  loadAverage: { start: loadAtStart, end: loadAtEnd },
  settings: { ...settings, perAgent },
  summaries,
  // Each guest's refreshes as [ms from the window's start, scan ms, ok, bytes, lateMs].
  measures: measures.map(({ records, ...rest }) => ({
    ...rest,
    records: records.map((guest) =>
      guest.map((
        r,
      ) => [r.at - rest.from, Math.round(r.ms), r.ok ? 1 : 0, r.bytes, r.lateMs ?? null])
    ),
  })),
};

const table = renderFleetTable(summaries);
const markdown = [
  `# Many guests: one IDS service`,
  "",
  `${results.machine.description}, Deno ${results.machine.deno}. Run ${results.startedAt}, ` +
  `${(results.wallS / 60).toFixed(1)} min; load average ${loadAtStart.join(" ")} at the start, ` +
  `${loadAtEnd.join(" ")} at the end (the machine is shared).`,
  "",
  `One \`serve\` process, ${settings.guests} guest entries at \`refreshMs: ${settings.refreshMs}\`, ` +
  `served by ${settings.agents} real agents on this machine (up to ${perAgent} entries each, ` +
  `each entry its own connection and walker, ring ${settings.ringMb} MiB); every guest is this ` +
  `machine, grown with idle processes to ${settings.processes} before each phase where others ` +
  `running left room (the count at each phase's start and end is in the table). Each phase ` +
  `measured ${settings.durationS} s, ${settings.warmupS} s after its agents were started one ` +
  `after the other, each once the guests of the one before were up (all the rest at once when ` +
  `they were not within ${AGENT_UP_TIMEOUT_S} s: "up" says how many were). ` +
  `\`delta\`: the service's default (deltas, one prefetch in 10 whole); \`full\`: ` +
  `\`"fullEvery": 1\`. CPU is the service's user + system time; "late" is the service's own ` +
  `\`lateMs\` (a refresh started after its due time, one interval after the previous ended); ` +
  `"after schedule" is start-to-start minus the interval (the previous refresh's duration plus ` +
  `its lateness), and "> 1 interval" counts refreshes more than one interval after a fixed ` +
  `1/${settings.refreshMs} ms schedule. "Machine CPU" is every process's, in cores busy: what ` +
  `others running left the service.`,
  "",
  table,
  "",
].join("\n");

const out = settings.out.endsWith("/") ? settings.out : `${settings.out}/`;
await Deno.mkdir(out, { recursive: true });
const name = `fleet-${startedAt.toISOString().replaceAll(":", "-")}`;
// Arrays of numbers (the samples, each refresh's tuple) on one line each.
const json = JSON.stringify(results, null, 2).replace(
  /\[\s+((?:-?[\d.e+]+|null)(?:,\s+(?:-?[\d.e+]+|null))*)\s+\]/g,
  (_, items: string) => `[${items.replace(/\s+/g, "")}]`,
);
await Deno.writeTextFile(`${out}${name}.json`, json + "\n");
await Deno.writeTextFile(`${out}${name}.md`, markdown);
// `deno fmt --check` of the repository formats Markdown too: the committed report must pass it.
await new Deno.Command(Deno.execPath(), { args: ["fmt", "--quiet", `${out}${name}.md`] }).output();
console.log(table);
log(`wrote ${out}${name}.json and ${name}.md`);
