/**
 * Measures how a real agent holds up against a hostile network and prints the numbers:
 *
 * 1. 100 sessions and `ps` (prefetch) without a flood, as a control; then 1,000 connections
 *    from 127.0.0.1 and 1,000 from 127.0.0.2 (half of them idle, half sending a TLS record header
 *    and then one byte a second, each reopened a second after the agent drops it) while a real
 *    IDS opens a session and lists the processes 100 times: the successes and the agent's RSS.
 * 2. An authenticated client that pipelines PREFETCH requests and never reads the answers, then
 *    another client's `ps`: how long that `ps` took (bounded by the agent's send deadline).
 * 3. An authenticated client that pushes 1 GiB of frames at the agent (reading the answers):
 *    the bytes pushed and the agent's RSS before and after.
 *
 * Usage: `deno run -A tools/flood.ts [--connections N] [--rounds N] [--push-mib N]
 * [--parts 1,2,3] [--agent-nofile N] [--agent-v8-flags FLAGS]`; `--agent-nofile` lowers the
 * agent's descriptor limit (with prlimit) below what the flood holds, as in a guest whose
 * `ulimit -n` is 1024; `--agent-v8-flags` runs the agent with V8 flags (such as
 * `--max-semi-space-size=2`, which trades a little CPU for less garbage held). It needs
 * 2 x N + 100 file descriptors in this process and as many in the agent (`ulimit -n`; it says
 * so when the limit is lower). The helpers are exported for the flood tests.
 *
 * @module
 */

import net from "node:net";
import { parseArgs } from "node:util";
import { spawnAgent } from "../agent/mod.ts";
import { procMemory } from "../bench/mod.ts";
import { openSession } from "../ids/client/mod.ts";
import {
  type Channel,
  connectChannel,
  encodeFrame,
  ensureIdsCredentials,
  FrameDecoder,
  FrameType,
  LIMITS,
  PrefetchTarget,
  PROTOCOL_VERSION,
} from "../protocol/mod.ts";

/** Connections held open against a port, each reopened (after a pause) when it is closed. */
export interface HeldConnections {
  /** Connections opened so far, reopenings included. */
  readonly opened: number;
  /** Connections the agent closed so far. */
  readonly dropped: number;
  /** Closes every connection and stops reopening them. */
  stop(): void;
}

/** Options of {@linkcode holdConnections}. */
export interface HoldOptions {
  /** The agent's port on 127.0.0.1. */
  port: number;
  /** The source address of the connections (any of 127/8). */
  localAddress: string;
  /** Connections held at once. */
  count: number;
  /**
   * Whether they are slow handshakes (a TLS record header, then one byte a second) rather than
   * idle ones. @default false
   */
  slow?: boolean;
  /** Pause before a closed connection is reopened. @default 1000 */
  reopenMs?: number;
}

/** A TLS handshake record header announcing 512 bytes that come one a second. */
const SLOW_HEADER = new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00]);

/** Holds `options.count` idle or slow connections to the agent until stopped. */
export function holdConnections(options: HoldOptions): HeldConnections {
  const { port, localAddress, count, slow = false, reopenMs = 1000 } = options;
  const sockets = new Set<net.Socket>();
  const timers = new Set<ReturnType<typeof setTimeout>>();
  let stopped = false;
  let opened = 0;
  let dropped = 0;
  const later = (fn: () => void, ms: number) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timers.add(timer);
  };
  const open = () => {
    if (stopped) return;
    opened++;
    const socket = net.connect({ host: "127.0.0.1", port, localAddress });
    sockets.add(socket);
    let drip: ReturnType<typeof setInterval> | undefined;
    socket.on("error", () => {});
    socket.on("data", () => {});
    socket.on("connect", () => {
      if (!slow) return;
      socket.write(SLOW_HEADER);
      drip = setInterval(() => socket.write(new Uint8Array([0])), 1000);
    });
    socket.on("close", () => {
      clearInterval(drip);
      sockets.delete(socket);
      if (stopped) return;
      dropped++;
      later(open, reopenMs);
    });
  };
  for (let i = 0; i < count; i++) open();
  return {
    get opened() {
      return opened;
    },
    get dropped() {
      return dropped;
    },
    stop() {
      stopped = true;
      for (const timer of timers) clearTimeout(timer);
      for (const socket of sockets) socket.destroy();
    },
  };
}

const residentBytes = (pid: number) => procMemory(pid).rssKb * 1024;

/** An authenticated channel that has exchanged HELLO, and a decoder for what follows. */
export interface RawClient {
  channel: Channel;
  decoder: FrameDecoder;
}

/** Connects to the agent as the IDS of `stateDir` and exchanges HELLO, below the IDS client. */
export async function rawClient(port: number, stateDir: string): Promise<RawClient> {
  const credentials = await ensureIdsCredentials(stateDir);
  const channel = await connectChannel({ hostname: "127.0.0.1", port, credentials });
  const decoder = new FrameDecoder({ maxFrame: LIMITS.maxFrame });
  await channel.write(encodeFrame({ type: FrameType.HELLO, id: 1, version: PROTOCOL_VERSION }));
  for await (const chunk of channel.chunks()) {
    decoder.push(chunk);
    const frame = decoder.next();
    if (frame === undefined) continue;
    if (frame.type !== FrameType.HELLO) {
      channel.close();
      throw new Error(
        `Cannot start a raw client: the agent answered HELLO with type ${frame.type}`,
      );
    }
    return { channel, decoder };
  }
  throw new Error("Cannot start a raw client: the agent closed the channel before its HELLO");
}

/** A PREFETCH of every task with the protocol's largest limits: a big answer. */
export function prefetchTasks(id: number): Uint8Array {
  return encodeFrame({
    type: FrameType.PREFETCH,
    id,
    target: PrefetchTarget.TASKS,
    maxObjects: LIMITS.maxRecords,
    maxBytes: LIMITS.maxPrefetchBytes,
    plan: new Uint8Array(0),
  });
}

/** Type byte of a frame no protocol version defines: the agent answers it with an ERROR. */
const JUNK_TYPE = 0x7f;

/** A frame of an unknown type with `payload` bytes: valid framing, not a request. */
export function junkFrame(id: number, payload: number): Uint8Array {
  const frame = new Uint8Array(9 + payload);
  const view = new DataView(frame.buffer);
  view.setUint32(0, 5 + payload, true);
  view.setUint8(4, JUNK_TYPE);
  view.setUint32(5, id, true);
  return frame;
}

/** Counts the bytes of a channel's answers as they arrive, until it closes. */
export async function drainAnswers(channel: Channel): Promise<number> {
  let received = 0;
  try {
    for await (const chunk of channel.chunks()) received += chunk.length;
  } catch {
    // The agent dropped it: what arrived until then is the count.
  }
  return received;
}

const MIB = 1 << 20;
/** The source addresses of the unauthenticated flood; the IDS shares the first. */
const FLOOD_ADDRESSES = ["127.0.0.1", "127.0.0.2"];

function mib(bytes: number): string {
  return `${(bytes / MIB).toFixed(1)} MiB`;
}

/**
 * One `ps` before measuring: the first one touches the walker's ring buffer and loads what the
 * agent keeps, which is the agent's cost of serving, not of any flood.
 */
async function warmUp(port: number, state: string): Promise<void> {
  using session = await openSession({ agent: `127.0.0.1:${port}`, state });
  await session.processes("prefetch");
}

/** Part 1: the unauthenticated flood and 100 `ps` from a real IDS. */
async function handshakeFlood(
  port: number,
  pid: number,
  state: string,
  perAddress: number,
  rounds: number,
) {
  const control = await psRounds(port, pid, state, rounds);
  console.log(
    `control: ${control.succeeded}/${rounds} ps succeeded without a flood; agent RSS ` +
      `${mib(control.before)} before, ${mib(control.peak)} at most ` +
      `(${mib(control.peak - control.before)} more at most)`,
  );
  const floods = FLOOD_ADDRESSES.flatMap((localAddress) => [
    holdConnections({ port, localAddress, count: perAddress / 2 }),
    holdConnections({ port, localAddress, count: perAddress / 2, slow: true }),
  ]);
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const flooded = await psRounds(port, pid, state, rounds);
  const opened = floods.reduce((sum, flood) => sum + flood.opened, 0);
  for (const flood of floods) flood.stop();
  console.log(
    `handshake flood: ${flooded.succeeded}/${rounds} ps succeeded while ${2 * perAddress} idle ` +
      `and slow connections were held from 127.0.0.1 and 127.0.0.2 (${opened} opened in all)`,
  );
  for (const [message, count] of flooded.failures) console.log(`  ${count} x ${message}`);
  console.log(
    `  agent RSS: ${mib(flooded.before)} before, ${mib(flooded.peak)} at most ` +
      `(${mib(flooded.peak - flooded.before)} more at most, ` +
      `${mib(flooded.peak - control.before)} more than before the control)`,
  );
}

/** Opens a session and lists the processes `rounds` times; counts successes, tracks the RSS. */
async function psRounds(port: number, pid: number, state: string, rounds: number) {
  const before = residentBytes(pid);
  let succeeded = 0;
  let peak = before;
  const failures = new Map<string, number>();
  for (let round = 0; round < rounds; round++) {
    try {
      using session = await openSession({ agent: `127.0.0.1:${port}`, state });
      const { processes } = await session.processes("prefetch");
      if (processes.length > 0) succeeded++;
    } catch (error) {
      const message = (error as Error).message;
      failures.set(message, (failures.get(message) ?? 0) + 1);
    }
    peak = Math.max(peak, residentBytes(pid));
  }
  return { before, peak, succeeded, failures };
}

/** Part 2: a client that never reads, and another client's `ps`. */
async function neverReading(port: number, state: string) {
  const stuck = await rawClient(port, state);
  for (let id = 2; id < 200; id++) await stuck.channel.write(prefetchTasks(id));
  await new Promise((resolve) => setTimeout(resolve, 500));
  const started = performance.now();
  using session = await openSession({ agent: `127.0.0.1:${port}`, state });
  const { processes } = await session.processes("prefetch");
  const took = performance.now() - started;
  stuck.channel.close();
  console.log(
    `never-reading client: another client's session and ps (${processes.length} processes) ` +
      `took ${took.toFixed(0)} ms`,
  );
}

/** Part 3: 1 GiB of frames pushed at the agent. */
async function push(port: number, pid: number, state: string, total: number) {
  const before = residentBytes(pid);
  const pusher = await rawClient(port, state);
  const answers = drainAnswers(pusher.channel);
  const frame = junkFrame(7, 60 * 1024);
  let pushed = 0;
  let peak = before;
  const started = performance.now();
  try {
    while (pushed < total) {
      await pusher.channel.write(frame);
      pushed += frame.length;
      if (pushed % (64 * MIB) < frame.length) peak = Math.max(peak, residentBytes(pid));
    }
  } catch (error) {
    console.log(`  the push stopped: ${(error as Error).message}`);
  }
  const seconds = (performance.now() - started) / 1000;
  peak = Math.max(peak, residentBytes(pid));
  pusher.channel.close();
  const received = await answers;
  console.log(
    `push: ${mib(pushed)} of frames pushed in ${seconds.toFixed(1)} s (${mib(received)} of ` +
      `answers); agent RSS ${mib(before)} before, ${mib(peak)} at most ` +
      `(${mib(peak - before)} more)`,
  );
}

/** Lowers process `pid`'s descriptor limit to `n` with prlimit(1), as a guest's ulimit would. */
async function limitFiles(pid: number, n: number): Promise<void> {
  const args = [`--pid=${pid}`, `--nofile=${n}:${n}`];
  const { success, stderr } = await new Deno.Command("prlimit", { args, stderr: "piped" }).output();
  if (!success) {
    throw new Error(`Cannot limit the agent's files to ${n}: ${new TextDecoder().decode(stderr)}`);
  }
}

async function fileLimit(): Promise<number> {
  const limits = await Deno.readTextFile("/proc/self/limits");
  const match = /^Max open files\s+(\d+|unlimited)/m.exec(limits);
  return match?.[1] === "unlimited" ? Infinity : Number(match?.[1] ?? 1024);
}

async function main() {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      connections: { type: "string", default: "1000" },
      rounds: { type: "string", default: "100" },
      "push-mib": { type: "string", default: "1024" },
      parts: { type: "string", default: "1,2,3" },
      "agent-nofile": { type: "string" },
      "agent-v8-flags": { type: "string" },
    },
  });
  const perAddress = Number(values.connections);
  const rounds = Number(values.rounds);
  const pushBytes = Number(values["push-mib"]) * MIB;
  const needed = 2 * perAddress + 100;
  const limit = await fileLimit();
  if (limit < needed) {
    console.log(
      `Cannot hold ${2 * perAddress} connections: the file limit is ${limit}, ${needed} are ` +
        `needed here and in the agent (raise it with "ulimit -n ${needed}" or prlimit)`,
    );
    Deno.exit(1);
  }
  // The agent inherits the environment: Deno reads V8 flags from DENO_V8_FLAGS.
  if (values["agent-v8-flags"]) Deno.env.set("DENO_V8_FLAGS", values["agent-v8-flags"]);
  const state = await Deno.makeTempDir({ prefix: "ebpfmon-flood-" });
  try {
    const reasons = new Map<string, number>();
    const log = (line: string) => {
      const reason = line.replace(/^ebpfmon-agent: /, "").replace(/\d+\.\d+\.\d+\.\d+:\d+/g, "ADDR")
        .replace(/"127\.0\.0\.\d"/, "ADDRESS");
      reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
    };
    await using agent = await spawnAgent({ stateDir: state, log });
    const agentLimit = values["agent-nofile"];
    if (agentLimit !== undefined) await limitFiles(agent.pid, Number(agentLimit));
    console.log(
      `agent pid ${agent.pid} on ${agent.address}, file limit ${agentLimit ?? limit} ` +
        `(this process: ${limit})`,
    );
    await warmUp(agent.port, state);
    const parts = values.parts.split(",");
    if (parts.includes("1")) await handshakeFlood(agent.port, agent.pid, state, perAddress, rounds);
    if (parts.includes("2")) await neverReading(agent.port, state);
    if (parts.includes("3")) await push(agent.port, agent.pid, state, pushBytes);
    console.log("agent log lines, by kind:");
    for (const [reason, count] of [...reasons].sort((a, b) => b[1] - a[1])) {
      console.log(`  ${String(count).padStart(6)} ${reason}`);
    }
  } finally {
    await Deno.remove(state, { recursive: true });
  }
}

if (import.meta.main) await main();
