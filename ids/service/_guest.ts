/**
 * One monitored guest, as the monitor service runs it: its agent connection (kept up, revalidated
 * on reconnect), the loop that refreshes its process list, the fetches of its views (what each
 * view is: `_views.ts`) and what they cost.
 *
 * @module
 */

import { type IdsCredentials, parseHostPort } from "../../protocol/mod.ts";
import {
  type ClientCounters,
  type FilesAnswer,
  guestCredentials,
  GuestSession,
  loadWalker,
  type ModulesAnswer,
  NoSuchProcessError,
} from "../client/mod.ts";
import type { Process, Socket } from "../linux/mod.ts";
import { hexBytes, type KAddr } from "../memory/mod.ts";
import type { ServiceConfig } from "./config.ts";
import { agentAddresses, type GuestConfig } from "./_guest_config.ts";
import { type AgentIdentity, compareIdentity } from "./_identity.ts";
import { type AgentTimeouts, dial } from "./_dial.ts";
import { type Feed, isViewError, spent } from "./_feed.ts";
import { HealthAlarm, type HealthAlerts } from "./_health.ts";
import type { Metrics } from "./_metrics.ts";
import { GuestViews, MODE } from "./_views.ts";
import type { Finding } from "../detect/mod.ts";
import type { AgentState, FetchRecord, KernelInfo, Snapshot, VmEvent } from "./types.ts";

const MAX_EVENTS = 50;
const MAX_RECENT = 100;
const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 30_000;

/** One guest: its connection, the snapshots of its views, its history. */
export class Guest {
  state: AgentState = "connecting";
  kernel?: KernelInfo;
  lastError?: VmEvent;
  readonly events: VmEvent[] = [];
  readonly totals = { fetches: 0, failures: 0, roundTrips: 0, bytes: 0, misses: 0, lookups: 0 };
  readonly recent: FetchRecord[] = [];
  /** The agent's addresses, tried in order. */
  readonly addresses: { hostname: string; port: number; text: string }[];
  /** The address whose agent answered last (the first before any did). */
  address: string;
  readonly #health: HealthAlarm;
  /** The agent behind the last connection. */
  #identity?: AgentIdentity;
  /**
   * Set when the same agent answered again after its connection was lost: the `migrated` event
   * waits for the first whole snapshot since, to say how long monitoring was interrupted.
   */
  #resumed?: { message: string; lastSnapshotAt?: number };
  readonly #views: GuestViews;
  #session?: GuestSession;
  #connecting?: Promise<GuestSession>;
  #closed = false;
  #wake?: () => void;
  #loop?: Promise<void>;

  constructor(
    readonly config: GuestConfig,
    readonly service: ServiceConfig,
    readonly metrics: Metrics,
    readonly log: (line: string) => void,
    /** Receives the findings of every scan (the alert store). */
    onFindings: (findings: Finding[], scanAt: number) => void = () => {},
    readonly health: HealthAlerts = { raise() {}, resolve() {} },
    readonly timeouts: AgentTimeouts = {},
  ) {
    this.#health = new HealthAlarm(config.name, health, (message, error) => {
      this.event(message, error);
    });
    this.addresses = agentAddresses(config).map((text) => ({ ...parseHostPort(text), text }));
    this.address = this.addresses[0].text;
    metrics.up.set({ vm: config.name }, 0);
    this.#views = new GuestViews(config, service.rules, onFindings, (message, error) => {
      this.event(message, error);
    });
  }

  /** The process list, from a full check at every refresh. */
  get processes(): Feed<Process[]> {
    return this.#views.processes;
  }

  get modules(): Feed<ModulesAnswer> {
    return this.#views.modules;
  }

  get sockets(): Feed<Socket[]> {
    return this.#views.sockets;
  }

  /** The view of `pid`'s open files (those of the pids read least recently are forgotten). */
  files(pid: number): Feed<FilesAnswer> {
    return this.#views.files(pid);
  }

  /** The kernel symbols its sessions looked up, kept while the boot and kernel are the same. */
  #symbols = new Map<string, KAddr | undefined>();

  /** Forgets every snapshot: they describe another kernel or boot. */
  #forget(): void {
    this.#symbols = new Map();
    this.#views.forget();
  }

  start(): void {
    this.#loop = this.#run();
  }

  event(message: string, error = false, about: Pick<VmEvent, "kind" | "gapMs"> = {}): VmEvent {
    const event: VmEvent = { at: Date.now(), message };
    if (about.kind) event.kind = about.kind;
    if (about.gapMs !== undefined) event.gapMs = about.gapMs;
    this.events.push(event);
    if (this.events.length > MAX_EVENTS) this.events.shift();
    if (error) this.lastError = event;
    this.log(`${this.config.name}: ${message}`);
    return event;
  }

  /**
   * Takes a new snapshot of `feed`'s view now; concurrent callers share one fetch. `dueAt` is
   * when the guest's loop meant this refresh to start (epoch ms): its record then says how late
   * it started (`lateMs`).
   */
  fetch<T>(feed: Feed<T>, dueAt?: number): Promise<Snapshot<T>> {
    feed.pending ??= this.#fetch(feed, dueAt).finally(() => feed.pending = undefined);
    return feed.pending;
  }

  async #fetch<T>(feed: Feed<T>, dueAt?: number): Promise<Snapshot<T>> {
    const started = Date.now();
    const late = dueAt === undefined ? {} : { lateMs: Math.max(0, started - dueAt) };
    const { view, label } = feed;
    let session: GuestSession | undefined;
    let before: ClientCounters | undefined;
    try {
      session = await this.#connect();
      before = session.client.counters;
      const { value, stats } = await feed.take(session);
      const snapshot = {
        vm: this.config.name,
        takenAt: Date.now(),
        mode: stats.mode,
        stats,
        value,
      };
      feed.snapshot = snapshot;
      if (feed === this.processes && this.#resumed) {
        const { message, lastSnapshotAt } = this.#resumed;
        this.#resumed = undefined;
        const gapMs = lastSnapshotAt === undefined ? undefined : snapshot.takenAt - lastSnapshotAt;
        const gap = gapMs === undefined ? "" : `; ${(gapMs / 1000).toFixed(2)} s between snapshots`;
        this.event(`${message}${gap}`, false, { kind: "migrated", gapMs });
      }
      this.#record({
        view,
        at: started,
        ms: stats.ms,
        mode: stats.mode,
        roundTrips: stats.roundTrips,
        bytes: stats.bytes,
        ok: true,
        ...late,
      });
      this.totals.misses += stats.misses;
      this.totals.lookups += stats.lookups;
      this.#health.healthy();
      if (stats.truncated) this.event(`${label} snapshot truncated: ${stats.reason}`, true);
      return snapshot;
    } catch (error) {
      // A process that does not exist is an answer, not a failure.
      const answered = error instanceof NoSuchProcessError;
      this.#record({
        view,
        at: started,
        ms: Date.now() - started,
        mode: MODE,
        ...spent(session, before),
        ok: answered,
        ...late,
      });
      const message = `cannot take ${label}: ${(error as Error).message}`;
      if (!isViewError(error)) {
        this.#drop(message);
        this.#health.unhealthy(error, this.address);
      } else if (!answered) this.event(message, true);
      throw error;
    }
  }

  #record(fetch: FetchRecord): void {
    const vm = this.config.name;
    this.totals.fetches++;
    this.totals.roundTrips += fetch.roundTrips;
    this.totals.bytes += fetch.bytes;
    this.metrics.roundTrips.inc({ vm }, fetch.roundTrips);
    this.metrics.bytes.inc({ vm }, fetch.bytes);
    if (fetch.ok) {
      this.metrics.fetchSeconds.observe(
        { vm, view: fetch.view, mode: fetch.mode },
        fetch.ms / 1000,
      );
    } else {
      this.totals.failures++;
      this.metrics.failures.inc({ vm, view: fetch.view });
    }
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
    const { agent, address } = await dial(this.config.name, this.addresses, credentials, {
      connectMs: this.timeouts.connectMs,
      idleMs: this.timeouts.idleMs,
      requestMs: this.timeouts.requestMs ?? Math.max(10_000, this.config.refreshMs),
    });
    try {
      const info = agent.info;
      // The IDS's own programs, never the agent's default: a refusal fails the connection.
      const loaded = await loadWalker(agent);
      const kernel: KernelInfo = {
        release: info.kernelRelease,
        btfHash: hexBytes(info.btfHash),
        bootId: info.bootId,
        programs: loaded.programs,
      };
      const identity = { kernel, pid: info.agentPid, anchor: agent.anchor };
      const change = compareIdentity(this.#identity, identity, address);
      if (change.forget) this.#forget();
      if (change.kind === "migrated") {
        // Said with the gap once a whole snapshot was taken again.
        this.#resumed = {
          message: change.message,
          lastSnapshotAt: this.processes.snapshot?.takenAt,
        };
      } else {
        this.#resumed = undefined;
        this.event(change.message, false, { kind: change.kind });
      }
      this.#identity = identity;
      this.kernel = kernel;
      this.address = address;
      const session = await GuestSession.open(agent, this.service.stateDir, {
        symbols: this.#symbols,
      });
      if (this.config.fullEvery !== undefined) session.fullEvery = this.config.fullEvery;
      this.#session = session;
      agent.closed.then((reason) => {
        if (this.#session !== session || this.#closed) return;
        this.#drop(`connection lost: ${reason.message}`);
        this.#health.unhealthy(reason, this.address);
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

  /** The IDS's identity and this guest's own pin (see `guestCredentials`). */
  #credentials(): Promise<IdsCredentials> {
    return guestCredentials(this.config, this.service.stateDir);
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
    // When the next refresh is due: an interval after the previous one started (refreshes start
    // at the guest's rate, whatever each takes; one that runs past the next one's start makes it
    // start at once, late), or a retry's backoff after a failure ended.
    let dueAt: number | undefined;
    while (!this.#closed) {
      let next = Date.now() + this.config.refreshMs;
      try {
        await this.fetch(this.processes, dueAt);
        backoff = BACKOFF_MIN_MS;
      } catch {
        next = Date.now() + Math.min(backoff, this.config.refreshMs);
        backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
      }
      // Closed while fetching: its wake-up came before this wait existed.
      if (this.#closed) break;
      dueAt = next;
      const wait = Math.max(0, next - Date.now());
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
    await Promise.allSettled(this.#views.all().map((feed) => feed.pending));
    await this.#loop;
    this.#session?.close();
    this.#session = undefined;
  }
}
