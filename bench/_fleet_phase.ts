/**
 * One phase of the many-guests benchmark (bench/fleet.ts): a service and agents of its own,
 * started one after the other, then a window measured: the service's CPU and RSS, its agents'
 * CPU and the machine's, and every guest's refresh records, read from the service's API.
 *
 * @module
 */

import { type AgentProcess, spawnReady } from "../agent/mod.ts";
import { IDS_PERMISSIONS } from "../ids/cli/mod.ts";
import {
  agentOf,
  type FleetSettings,
  type Phase,
  type PhaseMeasure,
  type RefreshRecord,
} from "./fleet_report.ts";
import { cpuSeconds as machineCpu, procCpuSeconds, processCount, procMemory } from "./machine.ts";
import { freePort } from "../protocol/mod.ts";

/** What a phase runs in: the machine and the agents' identities bench/fleet.ts set up. */
export interface Fleet {
  settings: FleetSettings;
  /** The benchmark's state directory: each phase's is made in it. */
  state: string;
  /** The IDS's state directory, with its credentials. */
  ids: string;
  /** Each agent's enrolled identity, by agent. */
  identities: readonly { dir: string; certificate: string }[];
  /** The guest entries' names, in configuration order. */
  names: readonly string[];
  /** Stopped when the benchmark ends or is interrupted: each phase defers its own stop to it. */
  stack: AsyncDisposableStack;
  /** Grows the machine to `settings.processes` with idle processes; resolves to the count. */
  grow(): Promise<number>;
  /** Starts agent `k` on `port`. */
  startAgent(k: number, port: number): Promise<AgentProcess>;
  log(line: string): void;
}

/** Most seconds from starting an agent to each of its guests having a snapshot. */
export const AGENT_UP_TIMEOUT_S = 60;
/** Requests of the service's API in flight at once when its refresh records are read. */
const READERS = 8;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The service's configuration for one phase, its state in `dir`, agent `k` on `ports[k]`. */
function config(fleet: Fleet, phase: Phase, dir: string, ports: number[]) {
  const { settings, ids, identities, names } = fleet;
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
export async function runPhase(fleet: Fleet, phase: Phase, round: number): Promise<PhaseMeasure> {
  const { settings, state, identities, names, stack, grow, startAgent, log } = fleet;
  /**
   * Milliseconds between two reads of every guest's refresh records during a window: the service
   * keeps its last 100, read before they are replaced. A window shorter than this is read at its
   * end only, so that reading costs the service nothing it measures.
   */
  const pollMs = settings.refreshMs * 80;
  const processesAtStart = await grow();
  const dir = `${state}/${phase}-${round}`;
  await Deno.mkdir(dir, { recursive: true });
  const path = `${dir}/ids.json`;
  const ports = identities.map(() => freePort());
  await Deno.writeTextFile(path, JSON.stringify(config(fleet, phase, dir, ports), null, 2));
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
    const agentCpu = () => agents.reduce((sum, a) => sum + procCpuSeconds(a.pid), 0);
    const logBefore = logLines;
    const from = Date.now();
    const cpuFrom = procCpuSeconds(serve.pid);
    const agentCpuFrom = agentCpu();
    const machineFrom = machineCpu([]).machine;
    const rss: number[] = [];
    const end = from + settings.durationS * 1000;
    let nextPoll = from + pollMs;
    let reading: Promise<void> | undefined;
    while (Date.now() < end) {
      rss.push(procMemory(serve.pid).rssKb * 1024);
      if (Date.now() >= nextPoll && !reading) {
        reading = collect().finally(() => reading = undefined);
        nextPoll += pollMs;
      }
      await sleep(Math.min(1000, Math.max(0, end - Date.now())));
    }
    const to = Date.now();
    const cpuS = procCpuSeconds(serve.pid) - cpuFrom;
    const agentCpuS = agentCpu() - agentCpuFrom;
    const machineCpuS = machineCpu([]).machine - machineFrom;
    const hwm = procMemory(serve.pid).hwmKb * 1024;
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
