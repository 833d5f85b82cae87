/**
 * The monitor service: every configured guest refreshed on its own interval, in prefetch mode,
 * each in its own loop, so that one slow, down or lying guest never delays another.
 *
 * A lost agent is retried with exponential backoff. When it answers again (a restart, or its VM
 * moved to another host) the guest's kernel is revalidated: a different BTF hash or boot id
 * drops the guest's snapshot and is reported as an event.
 *
 * @module
 */

import client from "prom-client";
import {
  ensureIdsCredentials,
  fingerprint,
  type IdsCredentials,
  parsePin,
} from "../../protocol/credentials.ts";
import { parseHostPort } from "../../protocol/cli.ts";
import { AgentClient } from "../client.ts";
import type { Process } from "../linux/processes.ts";
import { GuestSession } from "../session.ts";
import type { GuestConfig, ServiceConfig } from "./config.ts";
import {
  type AgentState,
  AgentUnavailableError,
  type FetchRecord,
  type KernelInfo,
  type Monitor,
  type ProcessesAnswer,
  type ReadOptions,
  type Snapshot,
  UnknownVmError,
  type VmEvent,
  type VmStats,
  type VmStatus,
} from "./types.ts";

const MAX_EVENTS = 50;
const MAX_RECENT = 100;
const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 30_000;
const CONNECT_TIMEOUT_MS = 5_000;

function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The metrics every guest reports, in one registry. */
class Metrics {
  readonly registry = new client.Registry();
  readonly fetchSeconds = new client.Histogram({
    name: "ebpfmon_fetch_seconds",
    help: "Time to take one snapshot of a guest's process list",
    labelNames: ["vm", "mode"] as const,
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  readonly bytes = new client.Counter({
    name: "ebpfmon_received_bytes_total",
    help: "Frame bytes received from a guest's agent",
    labelNames: ["vm"] as const,
    registers: [this.registry],
  });
  readonly roundTrips = new client.Counter({
    name: "ebpfmon_round_trips_total",
    help: "Requests sent to a guest's agent",
    labelNames: ["vm"] as const,
    registers: [this.registry],
  });
  readonly failures = new client.Counter({
    name: "ebpfmon_fetch_failures_total",
    help: "Snapshots of a guest that failed",
    labelNames: ["vm"] as const,
    registers: [this.registry],
  });
  readonly up = new client.Gauge({
    name: "ebpfmon_agent_up",
    help: "1 when the guest's agent is connected",
    labelNames: ["vm"] as const,
    registers: [this.registry],
  });
}

/** One guest: its connection, its last snapshot, its history. */
class Guest {
  state: AgentState = "connecting";
  kernel?: KernelInfo;
  snapshot?: Snapshot<Process[]>;
  lastError?: VmEvent;
  readonly events: VmEvent[] = [];
  readonly totals = { fetches: 0, failures: 0, roundTrips: 0, bytes: 0, misses: 0, lookups: 0 };
  readonly recent: FetchRecord[] = [];
  readonly hostname: string;
  readonly port: number;
  #session?: GuestSession;
  #connecting?: Promise<GuestSession>;
  #refreshing?: Promise<Snapshot<Process[]>>;
  #closed = false;
  #wake?: () => void;
  #loop?: Promise<void>;

  constructor(
    readonly config: GuestConfig,
    readonly service: ServiceConfig,
    readonly metrics: Metrics,
    readonly log: (line: string) => void,
  ) {
    ({ hostname: this.hostname, port: this.port } = parseHostPort(config.agent));
    metrics.up.set({ vm: config.name }, 0);
  }

  start(): void {
    this.#loop = this.#run();
  }

  event(message: string, error = false): VmEvent {
    const event = { at: Date.now(), message };
    this.events.push(event);
    if (this.events.length > MAX_EVENTS) this.events.shift();
    if (error) this.lastError = event;
    this.log(`${this.config.name}: ${message}`);
    return event;
  }

  /** Refreshes now; concurrent callers share one refresh. */
  refresh(): Promise<Snapshot<Process[]>> {
    this.#refreshing ??= this.#refresh().finally(() => this.#refreshing = undefined);
    return this.#refreshing;
  }

  async #refresh(): Promise<Snapshot<Process[]>> {
    const started = Date.now();
    const vm = this.config.name;
    try {
      const session = await this.#connect();
      const { processes, stats } = await session.processes("prefetch");
      const snapshot = { vm, takenAt: Date.now(), mode: stats.mode, stats, value: processes };
      this.snapshot = snapshot;
      this.#record({
        at: started,
        ms: stats.ms,
        mode: stats.mode,
        roundTrips: stats.roundTrips,
        bytes: stats.bytes,
        ok: true,
      });
      this.totals.misses += stats.misses;
      this.totals.lookups += stats.lookups;
      this.metrics.fetchSeconds.observe({ vm, mode: stats.mode }, stats.ms / 1000);
      this.metrics.bytes.inc({ vm }, stats.bytes);
      this.metrics.roundTrips.inc({ vm }, stats.roundTrips);
      if (stats.truncated) this.event(`snapshot truncated: ${stats.reason}`, true);
      return snapshot;
    } catch (error) {
      this.#record({
        at: started,
        ms: Date.now() - started,
        mode: "prefetch",
        roundTrips: 0,
        bytes: 0,
        ok: false,
      });
      this.metrics.failures.inc({ vm });
      this.#drop(`refresh failed: ${(error as Error).message}`);
      throw error;
    }
  }

  #record(fetch: FetchRecord): void {
    this.totals.fetches++;
    if (!fetch.ok) this.totals.failures++;
    this.totals.roundTrips += fetch.roundTrips;
    this.totals.bytes += fetch.bytes;
    this.recent.push(fetch);
    if (this.recent.length > MAX_RECENT) this.recent.shift();
  }

  /** The live session, connecting (and revalidating the guest's kernel) when there is none. */
  #connect(): Promise<GuestSession> {
    if (this.#session) return Promise.resolve(this.#session);
    this.#connecting ??= this.#open().finally(() => this.#connecting = undefined);
    return this.#connecting;
  }

  async #open(): Promise<GuestSession> {
    const credentials = await this.#credentials();
    const agent = await AgentClient.connect({
      hostname: this.hostname,
      port: this.port,
      credentials,
      timeoutMs: CONNECT_TIMEOUT_MS,
      requestTimeoutMs: Math.max(10_000, this.config.refreshMs),
    });
    try {
      const info = agent.info;
      const kernel: KernelInfo = {
        release: info.kernelRelease,
        btfHash: toHex(info.btfHash),
        bootId: info.bootId,
        programs: info.programs,
      };
      const before = this.kernel;
      if (before && before.btfHash !== kernel.btfHash) {
        this.snapshot = undefined;
        this.event(
          `kernel changed (BTF ${before.btfHash.slice(0, 12)} -> ${
            kernel.btfHash.slice(0, 12)
          }, ${kernel.release}): snapshot dropped`,
        );
      } else if (before && before.bootId !== kernel.bootId) {
        this.snapshot = undefined;
        this.event(`guest rebooted (boot id ${kernel.bootId}): snapshot dropped`);
      } else {
        this.event(
          before
            ? "agent reconnected, same kernel and boot"
            : `connected: ${kernel.release}, ${kernel.programs}`,
        );
      }
      this.kernel = kernel;
      const session = await GuestSession.open(agent, this.service.stateDir);
      this.#session = session;
      agent.closed.then((reason) => {
        if (this.#session !== session || this.#closed) return;
        this.#drop(`connection lost: ${reason.message}`);
        this.#wake?.();
      });
      this.state = "up";
      this.metrics.up.set({ vm: this.config.name }, 1);
      return session;
    } catch (error) {
      agent.close();
      throw error;
    }
  }

  async #credentials(): Promise<IdsCredentials> {
    const files = this.config.credentials;
    if (!files) return ensureIdsCredentials(this.service.stateDir, { agentPin: this.config.pin });
    const read = (path: string) => Deno.readTextFile(path);
    const [ca, cert, key] = await Promise.all([read(files.ca), read(files.cert), read(files.key)]);
    const agentPin = this.config.pin
      ? parsePin(this.config.pin)
      : fingerprint(await read(`${this.service.stateDir}/agent.pem`));
    return { ca, cert, key, agentPin };
  }

  /** Forgets the session after a failure; the next refresh reconnects. */
  #drop(reason: string): void {
    this.#session?.close();
    this.#session = undefined;
    if (this.state !== "down") this.event(reason, true);
    else this.lastError = { at: Date.now(), message: reason };
    this.state = "down";
    this.metrics.up.set({ vm: this.config.name }, 0);
  }

  async #run(): Promise<void> {
    let backoff = BACKOFF_MIN_MS;
    while (!this.#closed) {
      let wait = this.config.refreshMs;
      try {
        await this.refresh();
        backoff = BACKOFF_MIN_MS;
      } catch {
        wait = Math.min(backoff, this.config.refreshMs);
        backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#wake?.();
    await this.#refreshing?.catch(() => {});
    await this.#loop;
    this.#session?.close();
    this.#session = undefined;
  }
}

/** Options of {@linkcode MonitorService.start}. */
export interface MonitorOptions {
  /** Where events are logged. @default stderr */
  log?: (line: string) => void;
}

/** The running service. Close it to stop every guest's loop and connection. */
export class MonitorService implements Monitor, AsyncDisposable {
  #guests = new Map<string, Guest>();
  #metrics = new Metrics();

  private constructor(config: ServiceConfig, log: (line: string) => void) {
    for (const g of config.guests) {
      this.#guests.set(g.name, new Guest(g, config, this.#metrics, log));
    }
  }

  /** Starts refreshing every guest (the first refreshes run in the background). */
  static start(config: ServiceConfig, options: MonitorOptions = {}): MonitorService {
    const log = options.log ?? ((line: string) => console.error(`ebpfmon-ids: ${line}`));
    const service = new MonitorService(config, log);
    for (const guest of service.#guests.values()) guest.start();
    return service;
  }

  #guest(name: string): Guest {
    const guest = this.#guests.get(name);
    if (!guest) throw new UnknownVmError(name);
    return guest;
  }

  vms(): VmStatus[] {
    return [...this.#guests.keys()].map((name) => this.vm(name));
  }

  vm(name: string): VmStatus {
    const g = this.#guest(name);
    return {
      name,
      agent: g.config.agent,
      state: g.state,
      ...(g.kernel ? { kernel: g.kernel } : {}),
      refreshMs: g.config.refreshMs,
      ...(g.snapshot ? { lastSnapshotAt: g.snapshot.takenAt } : {}),
      ...(g.lastError ? { lastError: g.lastError } : {}),
      events: [...g.events],
    };
  }

  async processes(name: string, options: ReadOptions = {}): Promise<ProcessesAnswer> {
    const g = this.#guest(name);
    const cached = g.snapshot;
    const fresh = cached &&
      (options.maxAgeMs === undefined
        ? g.state === "up"
        : Date.now() - cached.takenAt <= options.maxAgeMs);
    if (fresh) return { snapshot: cached, stale: false };
    try {
      return { snapshot: await g.refresh(), stale: false };
    } catch (error) {
      const last = g.snapshot;
      if (options.allowStale && last) return { snapshot: last, stale: true };
      throw new AgentUnavailableError(
        name,
        (error as Error).message,
        last && Date.now() - last.takenAt,
      );
    }
  }

  async refresh(name: string): Promise<Snapshot<Process[]>> {
    const g = this.#guest(name);
    try {
      return await g.refresh();
    } catch (error) {
      const last = g.snapshot;
      throw new AgentUnavailableError(
        name,
        (error as Error).message,
        last && Date.now() - last.takenAt,
      );
    }
  }

  stats(name: string): VmStats {
    const g = this.#guest(name);
    const t = g.totals;
    return {
      fetches: t.fetches,
      failures: t.failures,
      roundTrips: t.roundTrips,
      bytes: t.bytes,
      cacheHitRatio: t.lookups ? 1 - t.misses / t.lookups : 1,
      recent: [...g.recent],
    };
  }

  metrics(): Promise<string> {
    return this.#metrics.registry.metrics();
  }

  /** Stops every guest's loop and closes its connection. Idempotent. */
  async close(): Promise<void> {
    await Promise.all([...this.#guests.values()].map((g) => g.close()));
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
