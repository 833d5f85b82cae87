/**
 * The restart soak (`deno task soak [--cycles 100]`): a real agent on this machine and a real
 * monitor service (`ids/main.ts serve`) watching it, then, `--cycles` times, the agent killed
 * with SIGKILL and started again on the same port and state directory, each time waited for
 * until the service holds a snapshot taken from the new agent.
 *
 * Before the first kill the soak opens a TCP listener of its own, so the guest (this machine)
 * holds a stable `new_listener` alert. At the end it checks that every restart was recovered,
 * that this alert stayed open as one alert (opened once, never resolved), that every
 * `agent_unreachable` a kill raised was resolved, and that the alert store's event ids are
 * contiguous; and it prints the service's RSS after the first and after the last cycle.
 * Exits 1 when a check fails. Needs root (the agent loads eBPF programs) and nothing else.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type AgentProcess, spawnAgent, spawnReady } from "../agent/mod.ts";
import { type AlertChange, AlertStore } from "../ids/alerts/mod.ts";
import { IDS_PERMISSIONS } from "../ids/cli/mod.ts";
import { freePort } from "../protocol/mod.ts";
import { procMemory } from "../bench/mod.ts";

const VM = "soak";
const MIB = 1 << 20;

/** Options of {@linkcode soak}. */
export interface SoakOptions {
  /** Kill-and-restart cycles. @default 100 */
  cycles?: number;
  /** The service's refresh interval. @default 200 */
  refreshMs?: number;
  /** Longest wait for one recovery. @default 30000 */
  recoverMs?: number;
  /** Called with each line of progress. @default console.error */
  log?: (line: string) => void;
}

/** What a soak measured and found. */
export interface SoakResult {
  cycles: number;
  recovered: number;
  /** Milliseconds from a restarted agent listening to the service's fresh snapshot, by cycle. */
  recoverMs: number[];
  rssFirst: number;
  rssLast: number;
  /** The service's RSS after each cycle, in bytes (GC makes one sample noisy; look at trends). */
  rss: number[];
  events: number;
  /** Every check that failed, in words; empty when the soak passed. */
  problems: string[];
}

/** Polls `probe` every 50 ms until it returns a value; undefined after `timeoutMs`. */
async function waitFor<T>(timeoutMs: number, probe: () => Promise<T | undefined>) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return undefined;
}

interface Api {
  get(path: string): Promise<unknown>;
}

function apiClient(url: string, token: string): Api {
  return {
    async get(path) {
      const response = await fetch(`${url}${path}`, {
        headers: { Authorization: `Bearer ${token}` },
      });
      const body = await response.json();
      if (!response.ok) throw new Error(`GET ${path} answered ${response.status}`);
      return body;
    },
  };
}

interface VmBody {
  state: string;
  lastSnapshotAt?: number;
}

interface AlertBody {
  id: number;
  rule: string;
  subject: string;
  state: string;
}

/** Waits until the service holds a snapshot taken after `since` from an agent that is up. */
function freshSnapshot(api: Api, since: number, timeoutMs: number) {
  return waitFor(timeoutMs, async () => {
    const vm = await api.get(`/v1/vms/${VM}`) as VmBody;
    return vm.state === "up" && (vm.lastSnapshotAt ?? 0) > since ? vm : undefined;
  });
}

/** The guest's open alerts of `rule` (filtered here: the API filters detection rules only). */
async function openAlerts(api: Api, rule: string): Promise<AlertBody[]> {
  const body = await api.get(`/v1/vms/${VM}/alerts?state=open&limit=1000`) as {
    alerts: AlertBody[];
  };
  return body.alerts.filter((alert) => alert.rule === rule);
}

/** Every event of the store at `path`, oldest first. */
function allEvents(path: string): AlertChange[] {
  using store = AlertStore.open(path);
  const events: AlertChange[] = [];
  for (
    let page = store.eventsAfter(0, 1000);
    page.length;
    page = store.eventsAfter(page.at(-1)!.id, 1000)
  ) {
    events.push(...page);
  }
  return events;
}

/** Checks the event log: contiguous ids, the listener's alert opened once and never resolved. */
function checkEvents(events: readonly AlertChange[], listenerAlert: number): string[] {
  const problems: string[] = [];
  for (let i = 1; i < events.length; i++) {
    if (events[i].id !== events[i - 1].id + 1) {
      problems.push(`alert event ids jump from ${events[i - 1].id} to ${events[i].id}`);
    }
  }
  const mine = events.filter((e) => e.alert.id === listenerAlert).map((e) => e.kind);
  if (mine.join() !== "opened") {
    problems.push(`the listener's alert ${listenerAlert} has events [${mine}], expected [opened]`);
  }
  const unreachable = new Map<number, string>();
  for (const e of events) {
    if (e.alert.rule === "agent_unreachable") unreachable.set(e.alert.id, e.kind);
  }
  const open = [...unreachable].filter(([, kind]) => kind !== "resolved").map(([id]) => id);
  if (open.length) problems.push(`agent_unreachable alerts ${open} were never resolved`);
  return problems;
}

/** Runs the soak; the agent, the service and the state directory are gone when it resolves. */
export async function soak(options: SoakOptions = {}): Promise<SoakResult> {
  const cycles = options.cycles ?? 100;
  const refreshMs = options.refreshMs ?? 200;
  const recoverMs = options.recoverMs ?? 30_000;
  const log = options.log ?? ((line: string) => console.error(line));
  const state = await Deno.makeTempDir({ prefix: "ebpfmon-soak-" });
  const address = `127.0.0.1:${freePort()}`;
  const result: SoakResult = {
    cycles,
    recovered: 0,
    recoverMs: [],
    rssFirst: 0,
    rssLast: 0,
    rss: [],
    events: 0,
    problems: [],
  };
  let agent: AgentProcess | undefined;
  let listener: Deno.Listener | undefined;
  try {
    agent = await spawnAgent({ stateDir: state, listen: address });
    const config = `${state}/ids.json`;
    await Deno.writeTextFile(
      config,
      JSON.stringify({
        listen: "127.0.0.1:0",
        stateDir: state,
        guests: [{ name: VM, agent: address, refreshMs }],
      }),
    );
    await using serve = await spawnReady({
      main: new URL("../ids/main.ts", import.meta.url),
      permissions: IDS_PERMISSIONS,
      args: ["serve", "--config", config],
      ready: /API on (\S+) \(token in (\S+)\)/,
    });
    const api = apiClient(serve.ready[1], (await Deno.readTextFile(serve.ready[2])).trim());
    if (!await freshSnapshot(api, 0, recoverMs)) {
      throw new Error(`Cannot start the soak: no snapshot of the agent in ${recoverMs} ms`);
    }
    listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    const alert = await waitFor(recoverMs, async () => {
      const found = (await openAlerts(api, "new_listener")).find((a) =>
        a.subject.endsWith(`:${port}`)
      );
      return found;
    });
    if (!alert) throw new Error(`Cannot start the soak: no new_listener alert for port ${port}`);
    log(`soak: agent ${address}, service ${serve.ready[1]}, alert ${alert.id} (${alert.subject})`);

    for (let cycle = 1; cycle <= cycles; cycle++) {
      await agent.stop("SIGKILL");
      try {
        agent = await spawnAgent({ stateDir: state, listen: address });
      } catch (error) {
        agent = undefined;
        result.problems.push(`cycle ${cycle}: ${(error as Error).message}`);
        break;
      }
      const listening = Date.now();
      const fresh = await freshSnapshot(api, listening, recoverMs);
      if (fresh) {
        result.recovered++;
        result.recoverMs.push(fresh.lastSnapshotAt! - listening);
      } else {
        result.problems.push(`cycle ${cycle}: no fresh snapshot within ${recoverMs} ms`);
      }
      const rss = procMemory(serve.pid).rssKb * 1024;
      result.rss.push(rss);
      if (cycle === 1) result.rssFirst = rss;
      if (cycle === cycles) result.rssLast = rss;
      if (cycle % 10 === 0 || cycle === 1) {
        log(`soak: cycle ${cycle}/${cycles}, service RSS ${(rss / MIB).toFixed(1)} MiB`);
      }
    }

    const stillOpen = await waitFor(recoverMs, async () => {
      const health = await openAlerts(api, "agent_unreachable");
      return health.length === 0 ? await openAlerts(api, "new_listener") : undefined;
    });
    if (!stillOpen) result.problems.push("agent_unreachable is still open after the last recovery");
    else if (!stillOpen.some((a) => a.id === alert.id)) {
      result.problems.push(`the listener's alert ${alert.id} is no longer open`);
    }
    await serve.stop();
    const events = allEvents(`${state}/alerts.db`);
    result.events = events.length;
    result.problems.push(...checkEvents(events, alert.id));
  } finally {
    listener?.close();
    await agent?.stop();
    await Deno.remove(state, { recursive: true });
  }
  if (result.rssLast - result.rssFirst > 32 * MIB) {
    result.problems.push(
      `the service's RSS grew by ${((result.rssLast - result.rssFirst) / MIB).toFixed(1)} MiB ` +
        "from the first to the last cycle, more than 32 MiB",
    );
  }
  return result;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.floor(sorted.length / 2)] : NaN;
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { cycles: { type: "string", default: "100" } } });
  const cycles = Number(values.cycles);
  if (!Number.isSafeInteger(cycles) || cycles < 1) {
    throw new RangeError(
      `Cannot soak: --cycles must be a positive integer, not "${values.cycles}"`,
    );
  }
  const r = await soak({ cycles });
  const mib = (n: number) => `${(n / MIB).toFixed(1)} MiB`;
  console.log(`cycles:    ${r.cycles}, recovered ${r.recovered}`);
  console.log(
    `recovery:  median ${median(r.recoverMs)} ms, max ${Math.max(...r.recoverMs)} ms ` +
      "(agent listening to fresh snapshot)",
  );
  console.log(`alerts:    ${r.events} events in the store`);
  console.log(
    `IDS RSS:   ${mib(r.rssFirst)} after cycle 1, ${mib(r.rssLast)} after cycle ${r.cycles} ` +
      `(${r.rssLast >= r.rssFirst ? "+" : ""}${mib(r.rssLast - r.rssFirst)}, target +32 MiB)`,
  );
  const half = Math.ceil(r.rss.length / 2);
  console.log(
    `RSS trend: median ${mib(median(r.rss.slice(0, half)))} over cycles 1-${half}, ` +
      `${mib(median(r.rss.slice(half)))} over cycles ${half + 1}-${r.rss.length}, ` +
      `max ${mib(Math.max(...r.rss))}`,
  );
  for (const problem of r.problems) console.log(`FAILED: ${problem}`);
  console.log(r.problems.length ? "soak FAILED" : "soak passed");
  return r.problems.length ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
