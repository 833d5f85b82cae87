/**
 * What the monitor service knows about its guests, as the REST API and the CLI read it.
 * The API depends on this interface only; `monitor.ts` implements it.
 *
 * @module
 */

import type { Alert, AlertChange, AlertQuery } from "../alerts/mod.ts";
import type { LoadedProgram } from "../../protocol/mod.ts";
import type { Process, Socket } from "../linux/mod.ts";
import type { FilesAnswer, Mode, ModulesAnswer, SnapshotStats } from "../client/mod.ts";

export { NoSuchProcessError } from "../client/mod.ts";
export type { Alert, AlertChange, AlertQuery } from "../alerts/mod.ts";

/** The views the monitor takes of a guest. */
export const VIEWS = ["processes", "modules", "sockets", "files"] as const;
/** One of {@linkcode VIEWS}. */
export type ViewName = typeof VIEWS[number];

/** Connection state of one guest's agent. */
export type AgentState = "connecting" | "up" | "down";

/** The guest kernel as its agent described it. */
export interface KernelInfo {
  release: string;
  /** SHA-256 of its BTF, hex. */
  btfHash: string;
  bootId: string;
  /** The in-guest programs serving requests, as the agent loaded them for the IDS. */
  programs: LoadedProgram[];
}

/**
 * What an event says about the guest's identity, when it says something: its agent answered
 * for the first time (`connected`); the same agent process of the same boot and kernel answered
 * again after its connection was lost (`migrated`: a live migration, or a broken connection);
 * another agent process of the same boot (`agent-restarted`); another boot (`rebooted`); another
 * kernel (`kernel-changed`). The last two drop the guest's snapshots.
 */
export type VmEventKind =
  | "connected"
  | "migrated"
  | "agent-restarted"
  | "rebooted"
  | "kernel-changed";

/** Something that happened to a guest: a reconnect, a reboot, a new kernel, an error. */
export interface VmEvent {
  /** Epoch milliseconds. */
  at: number;
  message: string;
  kind?: VmEventKind;
  /**
   * For `migrated`: milliseconds from the last whole snapshot before the connection was lost to
   * the first after the agent answered again (the monitoring gap).
   */
  gapMs?: number;
}

/** One snapshot of a view, as kept by the monitor. */
export interface Snapshot<T> {
  vm: string;
  /** Epoch milliseconds when the snapshot was complete. */
  takenAt: number;
  mode: Mode;
  stats: SnapshotStats;
  value: T;
}

/** One guest's status. */
export interface VmStatus {
  name: string;
  /** `HOST:PORT` of its agent: the one that answered last (the first configured before). */
  agent: string;
  /** Every address configured for its agent, in the order they are tried. */
  agents: string[];
  state: AgentState;
  /** Known once the agent has answered HELLO. */
  kernel?: KernelInfo;
  /** Refresh interval in milliseconds. */
  refreshMs: number;
  /** Epoch milliseconds of the last complete snapshot. */
  lastSnapshotAt?: number;
  lastError?: VmEvent;
  /** The most recent events, oldest first (bounded). */
  events: VmEvent[];
}

/** One fetch, for the recent-latency list of {@linkcode VmStats}. */
export interface FetchRecord {
  view: ViewName;
  at: number;
  ms: number;
  mode: Mode;
  roundTrips: number;
  bytes: number;
  ok: boolean;
  /**
   * For a refresh of the guest's own loop: milliseconds it started after it was due, one
   * refresh interval (or retry backoff) after the loop's previous refresh ended. A busy service
   * starts its refreshes late.
   */
  lateMs?: number;
}

/** Cumulative costs of monitoring one guest. */
export interface VmStats {
  fetches: number;
  failures: number;
  roundTrips: number;
  bytes: number;
  /** Share of view reads served from the cache (1 when every read hit). */
  cacheHitRatio: number;
  /** The most recent fetches, oldest first (bounded). */
  recent: FetchRecord[];
}

/** Options of the view reads of {@linkcode Monitor}. */
export interface ReadOptions {
  /**
   * Serve the cached snapshot only when it is at most this old; otherwise take a new one first.
   * @default {undefined} for processes: the snapshot the guest's loop keeps, while its agent is
   * up; the guest's `refreshMs` for the other views, which are taken only on request
   */
  maxAgeMs?: number;
  /** When the agent cannot be reached, serve the last snapshot anyway (marked stale). */
  allowStale?: boolean;
}

/** A snapshot of a view, as a read of {@linkcode Monitor} answers it. */
export interface Answer<T> {
  snapshot: Snapshot<T>;
  /** The agent could not be reached and this snapshot is older than asked for. */
  stale: boolean;
}

/** The answer to {@linkcode Monitor.processes}. */
export type ProcessesAnswer = Answer<Process[]>;

/** No guest by that name. */
export class UnknownVmError extends Error {
  constructor(readonly vm: string) {
    super(`Unknown VM "${vm}"`);
    this.name = "UnknownVmError";
  }
}

/** The guest's agent cannot be reached (or failed) and no acceptable snapshot is at hand. */
export class AgentUnavailableError extends Error {
  constructor(
    readonly vm: string,
    reason: string,
    /** Age in milliseconds of the last good snapshot, if there is one. */
    readonly lastSnapshotAgeMs?: number,
  ) {
    super(`Agent of VM "${vm}" is unavailable: ${reason}`);
    this.name = "AgentUnavailableError";
  }
}

/** What the API needs from the monitor service. */
export interface Monitor {
  /** Every configured guest, in configuration order. */
  vms(): VmStatus[];
  /** @throws {UnknownVmError} */
  vm(name: string): VmStatus;
  /**
   * The guest's process list: the cached snapshot when fresh enough, else a refresh first.
   * @throws {UnknownVmError}
   * @throws {AgentUnavailableError} when a refresh is needed and fails, and staleness is not allowed.
   */
  processes(name: string, options?: ReadOptions): Promise<ProcessesAnswer>;
  /**
   * The guest's kernel modules, taken on request. A kernel without loadable modules answers
   * `supported: false` with the reason.
   * @throws {UnknownVmError}
   * @throws {AgentUnavailableError} as {@linkcode Monitor.processes}
   */
  modules(name: string, options?: ReadOptions): Promise<Answer<ModulesAnswer>>;
  /**
   * The guest's TCP and UDP sockets with their owners, taken on request.
   * @throws {UnknownVmError}
   * @throws {AgentUnavailableError} as {@linkcode Monitor.processes}
   */
  sockets(name: string, options?: ReadOptions): Promise<Answer<Socket[]>>;
  /**
   * The open files of the guest's process `pid`, taken on request (and kept per pid).
   * @throws {UnknownVmError}
   * @throws {NoSuchProcessError} when the guest has no process `pid`
   * @throws {AgentUnavailableError} as {@linkcode Monitor.processes}
   */
  files(name: string, pid: number, options?: ReadOptions): Promise<Answer<FilesAnswer>>;
  /**
   * Refreshes the guest's process list now (prefetch mode) and returns the new snapshot.
   * @throws {UnknownVmError}
   * @throws {AgentUnavailableError}
   */
  refresh(name: string): Promise<Snapshot<Process[]>>;
  /** @throws {UnknownVmError} */
  stats(name: string): VmStats;
  /** Prometheus text exposition of the monitor's metrics. */
  metrics(): Promise<string>;
  /**
   * Stored alerts that pass every filter, the most recently seen first. A `vm` filter may name
   * a guest no longer configured (its alerts stay until the retention drops them).
   * @throws {RangeError} when `limit` is out of range
   */
  alerts(query?: AlertQuery): Alert[];
  /** Alert changes after event id `id` (0: the oldest kept), oldest first, at most `limit`. */
  alertsAfter(id: number, limit?: number): AlertChange[];
  /** Calls `listener` with every alert change once stored; returns the unsubscribe. */
  subscribeAlerts(listener: (change: AlertChange) => void): () => void;
}
