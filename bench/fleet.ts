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
 * guests of the one before are up (see {@linkcode runPhase}); then `--warmup` seconds pass, and
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
import { type AgentProcess, spawnAgent, spawnReady } from "../agent/mod.ts";
import { IDS_PERMISSIONS } from "../ids/cli/mod.ts";
import { enrollGuest } from "../protocol/mod.ts";
import { freePort, missingPrivilege } from "../tests/support/mod.ts";
import {
  agentOf,
  fleetSettings,
  type Phase,
  type PhaseMeasure,
  type RefreshRecord,
  renderFleetTable,
  summarisePhase,
} from "./fleet_report.ts";
import { cpuSeconds as machineCpu, loadavg, machine, processCount } from "./machine.ts";
import { buildNative, IdleProcesses } from "./native.ts";

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

/** Most seconds from starting an agent to each of its guests having a snapshot. */
const AGENT_UP_TIMEOUT_S = 60;
/**
 * Milliseconds between two reads of every guest's refresh records during a window: the service
 * keeps its last 100, read before they are replaced. A window shorter than this is read at its
 * end only, so that reading costs the service nothing it measures.
 */
const POLL_MS = settings.refreshMs * 80;
/** Requests of the service's API in flight at once when its refresh records are read. */
const READERS = 8;
const USER_HZ = 100;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** User + system CPU seconds of process `pid` (its threads included, not its children). */
function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime: fields 14 and 15 of proc(5), counted from the state (3).
  return (Number(fields[11]) + Number(fields[12])) / USER_HZ;
}

/** A `kB` line of `/proc/PID/status`, in bytes. */
function statusBytes(pid: number, key: "VmRSS" | "VmHWM"): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = new RegExp(`^${key}:\\s*(\\d+) kB$`, "m").exec(status)?.[1];
  if (kb === undefined) throw new Error(`Cannot read ${key} of process ${pid}`);
  return Number(kb) * 1024;
}

const startedAt = new Date();
const loadAtStart = loadavg();
log(`load average ${loadAtStart.join(" ")}; ${processCount()} processes on the machine`);

await using stack = new AsyncDisposableStack();
/** Set once interrupted: what was started is being stopped, then the benchmark exits. */
let interrupted: Promise<void> | undefined;
const cleanup = () => {
  interrupted ??= stack.disposeAsync().finally(() => Deno.exit(130));
};
Deno.addSignalListener("SIGINT", cleanup);
Deno.addSignalListener("SIGTERM", cleanup);

const tools = stack.use(await buildNative());
const state = await Deno.makeTempDir({ prefix: "ebpfmon-bench-fleet-" });
stack.defer(() => Deno.remove(state, { recursive: true }));
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

/** The service's configuration for one phase, its state in `dir`, agent `k` on `ports[k]`. */
function config(phase: Phase, dir: string, ports: number[]) {
  return {
    listen: "127.0.0.1:0",
    stateDir: dir,
    guests: names.map((name, i) => {
      const k = agentOf(i, settings.agents);
      return {
        name,
        agent: `127.0.0.1:${ports[k]}`,
        certificate: identities[k].certificate,
        sharedPin: true,
        credentials: { ca: `${ids}/ca.pem`, cert: `${ids}/ids.pem`, key: `${ids}/ids.key` },
        refreshMs: settings.refreshMs,
        ...(phase === "full" ? { fullEvery: 1 } : {}),
      };
    }),
  };
}

interface VmStatus {
  name: string;
  state: string;
  lastSnapshotAt?: number;
}

/**
 * One phase: a service of its own and agents of their own. The agents are started one after
 * the other, each once the guests of the one before are up: every guest connecting at once has
 * each agent verify its walkers in a queue that outlasts the service's 10 s LOAD deadline, and
 * the retries every interval keep it so (no guest was up after 5 minutes, here). Once the guests
 * of one agent are not all up within {@linkcode AGENT_UP_TIMEOUT_S}, the rest start at once.
 */
async function runPhase(phase: Phase, round: number): Promise<PhaseMeasure> {
  const processesAtStart = await grow();
  const dir = `${state}/${phase}-${round}`;
  await Deno.mkdir(dir, { recursive: true });
  const path = `${dir}/ids.json`;
  const ports = identities.map(() => freePort());
  await Deno.writeTextFile(path, JSON.stringify(config(phase, dir, ports), null, 2));
  let logLines = 0;
  const lastLines: string[] = [];
  const started = performance.now();
  const serve = await spawnReady({
    main: new URL("../ids/main.ts", import.meta.url),
    permissions: IDS_PERMISSIONS,
    args: ["serve", "--config", path],
    ready: /API on (\S+) \(token in (\S+)\)/,
    log: (line) => {
      logLines++;
      lastLines.push(line);
      if (lastLines.length > 20) lastLines.shift();
    },
  });
  const agents: AgentProcess[] = [];
  // Stopped at the phase's end, or with the rest when the benchmark is interrupted.
  const stop = async () => {
    await serve.stop();
    await Promise.all(agents.map((agent) => agent.stop()));
  };
  stack.defer(stop);
  try {
    const [, url, tokenFile] = serve.ready;
    const token = (await Deno.readTextFile(tokenFile)).trim();
    const get = async (p: string) => {
      const res = await fetch(`${url}${p}`, { headers: { Authorization: `Bearer ${token}` } });
      if (!res.ok) throw new Error(`GET ${p}: ${res.status} ${await res.text()}`);
      return await res.json();
    };
    /** The guests up with a snapshot. */
    const upNow = async () =>
      new Set(
        ((await get("/v1/vms")).vms as VmStatus[])
          .filter((vm) => vm.state === "up" && vm.lastSnapshotAt !== undefined)
          .map((vm) => vm.name),
      );
    // Once the guests of an agent are not all up in time, the service is saturated: waiting
    // longer changes nothing, and the rest are started at once.
    let saturated = false;
    for (let k = 0; k < settings.agents; k++) {
      agents.push(await startAgent(k, ports[k]));
      const mine = names.filter((_, i) => agentOf(i, settings.agents) <= k);
      const since = performance.now();
      while (!saturated) {
        const up = await upNow();
        if (mine.every((name) => up.has(name))) break;
        if (performance.now() - since > AGENT_UP_TIMEOUT_S * 1000) {
          saturated = true;
          log(
            `${phase} ${round}: ${mine.filter((n) => up.has(n)).length} of the ${mine.length} ` +
              `guests of agents 0-${k} up after ${AGENT_UP_TIMEOUT_S} s; starting the rest at ` +
              `once. The service's last lines:\n${lastLines.join("\n")}`,
          );
        }
        await sleep(250);
      }
    }
    const upS = (performance.now() - started) / 1000;
    log(`${phase} ${round}: ${(await upNow()).size} guests up after ${upS.toFixed(1)} s`);
    await sleep(settings.warmupS * 1000);
    const upAtStart = (await upNow()).size;

    const records = new Map<string, Map<number, RefreshRecord>>(
      names.map((n) => [n, new Map()]),
    );
    // A busy service answers each request late: several in flight at once.
    const collect = async () => {
      const queue = [...names];
      const reader = async () => {
        for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
          const stats = await get(`/v1/vms/${name}/stats`);
          for (const r of stats.recent as (RefreshRecord & { view: string })[]) {
            if (r.view !== "processes") continue;
            const { at, ms, ok, bytes, roundTrips, lateMs } = r;
            records.get(name)!.set(at, { at, ms, ok, bytes, roundTrips, lateMs });
          }
        }
      };
      await Promise.all(Array.from({ length: READERS }, reader));
    };
    const agentCpu = () => agents.reduce((sum, a) => sum + cpuSeconds(a.pid), 0);
    const logBefore = logLines;
    const from = Date.now();
    const cpuFrom = cpuSeconds(serve.pid);
    const agentCpuFrom = agentCpu();
    const machineFrom = machineCpu([]).machine;
    const rss: number[] = [];
    const end = from + settings.durationS * 1000;
    let nextPoll = from + POLL_MS;
    let reading: Promise<void> | undefined;
    while (Date.now() < end) {
      rss.push(statusBytes(serve.pid, "VmRSS"));
      if (Date.now() >= nextPoll && !reading) {
        reading = collect().finally(() => reading = undefined);
        nextPoll += POLL_MS;
      }
      await sleep(Math.min(1000, Math.max(0, end - Date.now())));
    }
    const to = Date.now();
    const cpuS = cpuSeconds(serve.pid) - cpuFrom;
    const agentCpuS = agentCpu() - agentCpuFrom;
    const machineCpuS = machineCpu([]).machine - machineFrom;
    const hwm = statusBytes(serve.pid, "VmHWM");
    const logLinesInWindow = logLines - logBefore;
    const processesEnd = processCount();
    // The refreshes that started before the window's end have their next one by now.
    await sleep(settings.refreshMs * 1.5);
    await reading;
    await collect();
    const upAtEnd = (await upNow()).size;
    if (logLinesInWindow) log(`${phase} ${round}: the service logged:\n${lastLines.join("\n")}`);
    return {
      phase,
      round,
      guests: settings.guests,
      refreshMs: settings.refreshMs,
      from,
      to,
      cpuS,
      agentCpuS,
      machineCpuS,
      rss,
      hwm,
      upS,
      up: { start: upAtStart, end: upAtEnd },
      records: names.map((n) => [...records.get(n)!.values()].sort((a, b) => a.at - b.at)),
      logLines: logLinesInWindow,
      processes: { start: processesAtStart, end: processesEnd },
    };
  } finally {
    await stop();
  }
}

const measures: PhaseMeasure[] = [];
for (let round = 1; round <= settings.rounds; round++) {
  for (const phase of settings.phases) {
    const measure = await runPhase(phase, round).catch(async (error) => {
      // Interrupted: the service it measured is gone; wait for the rest to stop.
      if (interrupted) await interrupted;
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
