/**
 * The monitor service: every configured guest's process list refreshed on its own interval, in
 * prefetch mode, each in its own loop, so that one slow, down or lying guest never delays another.
 * The other views (modules, sockets, a process's open files) are taken on request, in the same
 * mode, over the same connection, and kept so that requests within their max age share them.
 *
 * A lost agent is retried with exponential backoff. When it answers again (a restart, or its VM
 * moved to another host) the guest's kernel is revalidated: a different BTF hash or boot id
 * drops the guest's snapshots and is reported as an event.
 *
 * @module
 */

import {
  type Alert,
  type AlertChange,
  type AlertQuery,
  AlertService,
  HEALTH_RULES,
} from "../alerts/mod.ts";
import type { Finding } from "../detect/mod.ts";
import type { Process, Socket } from "../linux/mod.ts";
import type { FilesAnswer, ModulesAnswer } from "../client/mod.ts";
import type { ServiceConfig } from "./config.ts";
import { Guest } from "./_guest.ts";
import { type Feed, isViewError } from "./_feed.ts";
import type { AgentTimeouts } from "./_dial.ts";
import { Metrics } from "./_metrics.ts";
import {
  AgentUnavailableError,
  type Answer,
  type Monitor,
  type ProcessesAnswer,
  type ReadOptions,
  type Snapshot,
  UnknownVmError,
  type VmStats,
  type VmStatus,
} from "./types.ts";

/** What a failed fetch is to the reader: the view's own error, or its agent's unavailability. */
function unavailable(vm: string, error: unknown, last?: Snapshot<unknown>): unknown {
  if (isViewError(error)) return error;
  return new AgentUnavailableError(vm, (error as Error).message, last && Date.now() - last.takenAt);
}

/** Options of {@linkcode MonitorService.start}. */
export interface MonitorOptions {
  /** Where events are logged. @default stderr */
  log?: (line: string) => void;
  /** Deadlines of every guest's agent connection. @default those of {@linkcode AgentTimeouts} */
  agentTimeouts?: AgentTimeouts;
}

/** The running service. Close it to stop every guest's loop and connection. */
export class MonitorService implements Monitor, AsyncDisposable {
  #guests = new Map<string, Guest>();
  #metrics = new Metrics();
  #alerts: AlertService;

  private constructor(config: ServiceConfig, log: (line: string) => void, timeouts: AgentTimeouts) {
    Deno.mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });
    this.#alerts = AlertService.open(`${config.stateDir}/alerts.db`, {
      resolveAfter: config.alerts.resolveAfter,
      retentionDays: config.alerts.retentionDays,
      webhooks: config.webhooks,
      registry: this.#metrics.registry,
      log,
    });
    for (const g of config.guests) {
      const open = this.#alerts.list({ vm: g.name, state: "open", limit: 1000 })
        .map((a) => a.rule).filter((rule) => HEALTH_RULES.includes(rule));
      const health = {
        raise: (finding: Finding, at: number) => this.#alerts.raise(g.name, finding, at),
        resolve: (rule: string, at: number) => this.#alerts.resolve(g.name, rule, at),
        open,
      };
      this.#guests.set(
        g.name,
        new Guest(
          g,
          config,
          this.#metrics,
          log,
          (f, at) => this.applyFindings(g.name, f, at),
          health,
          timeouts,
        ),
      );
    }
  }

  /**
   * Starts refreshing every guest (the first refreshes run in the background). Opens the alert
   * store `stateDir/alerts.db`.
   * @throws {Error} when the alert store cannot be opened
   */
  static start(config: ServiceConfig, options: MonitorOptions = {}): MonitorService {
    const log = options.log ?? ((line: string) => console.error(`ebpfmon-ids: ${line}`));
    const service = new MonitorService(config, log, options.agentTimeouts ?? {});
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
      agent: g.address,
      agents: g.addresses.map((a) => a.text),
      state: g.state,
      ...(g.kernel ? { kernel: g.kernel } : {}),
      refreshMs: g.config.refreshMs,
      ...(g.processes.snapshot ? { lastSnapshotAt: g.processes.snapshot.takenAt } : {}),
      ...(g.lastError ? { lastError: g.lastError } : {}),
      events: [...g.events],
    };
  }

  processes(name: string, options: ReadOptions = {}): Promise<ProcessesAnswer> {
    return this.#read(name, options, (g) => g.processes);
  }

  modules(name: string, options: ReadOptions = {}): Promise<Answer<ModulesAnswer>> {
    return this.#read(name, options, (g) => g.modules);
  }

  sockets(name: string, options: ReadOptions = {}): Promise<Answer<Socket[]>> {
    return this.#read(name, options, (g) => g.sockets);
  }

  /** @throws {RangeError} when `pid` is not a non-negative integer */
  async files(name: string, pid: number, options: ReadOptions = {}): Promise<Answer<FilesAnswer>> {
    if (!Number.isSafeInteger(pid) || pid < 0) {
      throw new RangeError(`Cannot read the files of pid ${pid}: expected a non-negative integer`);
    }
    return await this.#read(name, options, (g) => g.files(pid));
  }

  /**
   * A view's cached snapshot when fresh enough, else a new one; when the agent fails, the last
   * snapshot marked stale if allowed.
   */
  async #read<T>(
    name: string,
    options: ReadOptions,
    feedOf: (guest: Guest) => Feed<T>,
  ): Promise<Answer<T>> {
    const g = this.#guest(name);
    const feed = feedOf(g);
    const cached = feed.snapshot;
    const maxAgeMs = options.maxAgeMs ?? feed.maxAgeMs;
    const fresh = cached &&
      (maxAgeMs === undefined ? g.state === "up" : Date.now() - cached.takenAt <= maxAgeMs);
    if (fresh) return { snapshot: cached, stale: false };
    try {
      return { snapshot: await g.fetch(feed), stale: false };
    } catch (error) {
      const last = feed.snapshot;
      if (options.allowStale && last && !isViewError(error)) return { snapshot: last, stale: true };
      throw unavailable(name, error, last);
    }
  }

  async refresh(name: string): Promise<Snapshot<Process[]>> {
    const g = this.#guest(name);
    try {
      return await g.fetch(g.processes);
    } catch (error) {
      throw unavailable(name, error, g.processes.snapshot);
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

  /**
   * Stores one scan's findings of guest `vm` taken at `scanAt` (epoch ms) as alerts, and sends
   * the changes to the webhooks and the alert stream (without waiting for them).
   * @throws {UnknownVmError}
   * @throws {TypeError} for a finding of unknown severity
   * @throws {Error} when the alert store fails (nothing of the scan is stored then)
   */
  applyFindings(vm: string, findings: readonly Finding[], scanAt: number): AlertChange[] {
    this.#guest(vm);
    return this.#alerts.apply(vm, findings, scanAt);
  }

  alerts(query: AlertQuery = {}): Alert[] {
    return this.#alerts.list(query);
  }

  alertsAfter(id: number, limit?: number): AlertChange[] {
    return this.#alerts.eventsAfter(id, limit);
  }

  subscribeAlerts(listener: (change: AlertChange) => void): () => void {
    return this.#alerts.subscribe(listener);
  }

  /** Stops every guest's loop and closes its connection, then the alert store. Idempotent. */
  async close(): Promise<void> {
    await Promise.all([...this.#guests.values()].map((g) => g.close()));
    await this.#alerts.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
