/**
 * The agent's memory (`deno task bench:agent`): a real agent's RSS idle after start, once an IDS
 * has connected (and loaded its walker), and at its peak during prefetches of the process list
 * at each count of processes, with what each prefetch took. Where the RSS lies (the BPF maps'
 * mappings, the deno binary, anonymous memory) is printed for the start and the end.
 *
 * With `--baseline DIR` (another checkout, `deno task build:bpf` run in it), that checkout's
 * agent runs beside this one, each with its own walker object, their prefetches alternated one
 * by one (the first of each pair in turn), so that the two are measured side by side.
 *
 * Needs root (the agent loads BPF) and clang (the idle processes are a small C helper).
 *
 * Usage: `deno task bench:agent [--counts 100,1000,10000] [--reps 9] [--baseline DIR]`
 *
 * @module
 */

import { parseArgs } from "node:util";
import { AGENT_PERMISSIONS, type ReadyProcess, spawnReady } from "../agent/mod.ts";
import { ensureIdsCredentials } from "../protocol/mod.ts";
import { AgentClient, GuestSession } from "../ids/client/mod.ts";
import {
  machine,
  procCpuSeconds,
  processCount,
  processLimits,
  type ProcMemory,
  procMemory,
  resetPeakMemory,
} from "./machine.ts";
import { buildNative, IdleProcesses } from "./native.ts";
import { quantile } from "./results.ts";

const MB = 1 << 20;

/** One agent under measurement: a checkout's entry point and walker object. */
interface Variant {
  name: string;
  root: URL;
  permissions: readonly string[];
}

interface Running {
  variant: Variant;
  agent: ReadyProcess;
  session: GuestSession;
  started: ProcMemory;
  connected: ProcMemory;
}

/** The process's RSS by what is mapped, in MB. */
function breakdown(pid: number): Record<string, number> {
  const sums: Record<string, number> = {};
  let what = "";
  for (const line of Deno.readTextFileSync(`/proc/${pid}/smaps`).split("\n")) {
    const mapping = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (mapping) {
      const name = mapping[1];
      what = name === "anon_inode:bpf-map"
        ? "BPF maps"
        : /(^|\/)deno$/.test(name)
        ? "deno binary"
        : name === "" || name.startsWith("[")
        ? "anonymous"
        : "other files";
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB$/.exec(line);
    if (rss) sums[what] = (sums[what] ?? 0) + Number(rss[1]) / 1024;
  }
  return sums;
}

function describe(sums: Record<string, number>): string {
  return Object.entries(sums).sort((a, b) => b[1] - a[1])
    .map(([what, mb]) => `${what} ${mb.toFixed(1)}`).join(", ");
}

async function start(variant: Variant, state: string): Promise<Running> {
  const agent = await spawnReady({
    main: new URL("agent/main.ts", variant.root),
    permissions: variant.permissions,
    args: ["--listen", "127.0.0.1:0", "--state", state],
    ready: / listening on (\S+):(\d+) /,
  });
  try {
    // The agent's own start-up work (its log line comes before the last of it) settles first.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const started = procMemory(agent.pid);
    const client = await AgentClient.connect({
      hostname: agent.ready[1],
      port: Number(agent.ready[2]),
      credentials: await ensureIdsCredentials(state),
    });
    const object = await Deno.readFile(new URL("bpf/out/walk.bpf.o", variant.root));
    const session = await GuestSession.open(client, state, { object }).catch((error) => {
      client.close();
      throw error;
    });
    return { variant, agent, session, started, connected: procMemory(agent.pid) };
  } catch (error) {
    await agent.stop();
    throw error;
  }
}

/** One prefetch of the process list, and the agent's peak RSS and CPU time during it. */
async function prefetch(run: Running) {
  resetPeakMemory(run.agent.pid);
  const cpu = procCpuSeconds(run.agent.pid) * 1000;
  const { processes, stats } = await run.session.processes("prefetch");
  return {
    ms: stats.ms,
    processes: processes.length,
    bytes: stats.prefetch?.bytes ?? 0,
    stop: stats.prefetch?.stop ?? "none",
    agentMs: stats.prefetch?.agentMs ?? NaN,
    agentCpuMs: procCpuSeconds(run.agent.pid) * 1000 - cpu,
    peakKb: procMemory(run.agent.pid).hwmKb,
  };
}

const { values } = parseArgs({
  options: {
    counts: { type: "string", default: "100,1000,10000" },
    reps: { type: "string", default: "9" },
    baseline: { type: "string" },
  },
});
const counts = values.counts.split(",").map(Number).sort((a, b) => a - b);
const reps = Number(values.reps);
if (counts.some((n) => !Number.isInteger(n) || n < 1) || !Number.isInteger(reps) || reps < 1) {
  throw new RangeError(`Invalid --counts "${values.counts}" or --reps "${values.reps}"`);
}
const limits = processLimits();
if (Math.max(...counts) + 2000 > limits.max) {
  throw new RangeError(`Cannot grow the process list to ${Math.max(...counts)}: ${limits.reason}`);
}

const variants: Variant[] = [];
if (values.baseline) {
  const root = new URL(`file://${await Deno.realPath(values.baseline)}/`);
  const { AGENT_PERMISSIONS: permissions } = await import(
    new URL("agent/permissions.ts", root).href
  );
  variants.push({ name: "baseline", root, permissions });
}
variants.push({
  name: "this tree",
  root: new URL("../", import.meta.url),
  permissions: AGENT_PERMISSIONS,
});

const log = (line: string) => console.error(`bench:agent: ${line}`);
await using stack = new AsyncDisposableStack();
const tools = stack.use(await buildNative());
const idle = stack.use(IdleProcesses.start(tools));
const running: Running[] = [];
for (const variant of variants) {
  const state = await Deno.makeTempDir({ prefix: "ebpfmon-bench-agent-" });
  stack.defer(() => Deno.remove(state, { recursive: true }));
  const run = await start(variant, state);
  stack.defer(() => run.agent.stop());
  stack.defer(() => run.session.close());
  running.push(run);
  log(`${variant.name}: agent ${run.agent.pid}, ${describe(breakdown(run.agent.pid))} MB`);
}

const rows: string[] = [];
const peaks = new Map<Running, number>();
for (const count of counts) {
  await idle.resize(Math.max(0, count - (processCount() - idle.count)));
  const samples = new Map(running.map((r) => [r, [] as Awaited<ReturnType<typeof prefetch>>[]]));
  for (const run of running) await prefetch(run);
  for (let rep = 0; rep < reps; rep++) {
    const order = rep % 2 ? [...running].reverse() : running;
    for (const run of order) samples.get(run)!.push(await prefetch(run));
  }
  for (const [run, list] of samples) {
    const ms = list.map((s) => s.ms);
    const agentMs = list.map((s) => s.agentMs);
    const agentCpuMs = list.reduce((sum, s) => sum + s.agentCpuMs, 0) / list.length;
    const peakKb = Math.max(...list.map((s) => s.peakKb));
    peaks.set(run, Math.max(peaks.get(run) ?? 0, peakKb));
    const last = list.at(-1)!;
    rows.push(
      `| ${run.variant.name} | ${count.toLocaleString("en")} | ${last.processes} | ` +
        `${(run.started.rssKb / 1024).toFixed(0)} | ${(run.connected.rssKb / 1024).toFixed(0)} | ` +
        `${(peakKb / 1024).toFixed(0)} | ${
          (procMemory(run.agent.pid).rssKb / 1024).toFixed(0)
        } | ` +
        `${quantile(ms, 0.5).toFixed(1)} | ${quantile(ms, 0.9).toFixed(1)} | ` +
        `${quantile(agentMs, 0.5).toFixed(1)} | ${agentCpuMs.toFixed(0)} | ` +
        `${(last.bytes / MB).toFixed(1)} | ${last.stop} |`,
    );
  }
  log(`${count} processes done`);
}
for (const run of running) {
  log(`${run.variant.name}: after the walks, ${describe(breakdown(run.agent.pid))} MB`);
}

console.log(`Machine: ${machine().description}; ${reps} prefetches per point and agent.\n`);
console.log(
  "| agent | processes | listed | idle MB | connected MB | peak MB | after MB | median ms | " +
    "p90 ms | agent median ms | agent CPU ms | walk MB | stop |",
);
console.log(
  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
);
for (const row of rows) console.log(row);
