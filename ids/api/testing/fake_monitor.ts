/**
 * An in-memory {@linkcode Monitor} for the API's tests and benchmarks: guests whose process
 * tables, modules, sockets and open files the test sets, snapshots taken on a clock the test
 * moves, and agents it can take down.
 *
 * @module
 */

import { AlertStore } from "../../alerts/mod.ts";
import type { Finding } from "../../detect/mod.ts";
import type { Module, OpenFile, Process, Socket } from "../../linux/mod.ts";
import type { FilesAnswer, ModulesAnswer } from "../../client/mod.ts";
import {
  AgentUnavailableError,
  type Alert,
  type AlertChange,
  type AlertQuery,
  type Answer,
  type FetchRecord,
  type Monitor,
  NoSuchProcessError,
  type ProcessesAnswer,
  type ReadOptions,
  type Snapshot,
  UnknownVmError,
  type ViewName,
  type VmStats,
  type VmStatus,
} from "../../service/mod.ts";

/** A process with the given ids and name, the other fields derived from them. */
export function fakeProcess(pid: number, ppid: number, uid: number, comm: string): Process {
  return {
    pid,
    tgid: pid,
    ppid,
    comm,
    state: "S",
    uid,
    euid: uid,
    suid: uid,
    fsuid: uid,
    gid: uid,
    egid: uid,
    sgid: uid,
    fsgid: uid,
    kthread: ppid === 2,
    task: `0xffff888000${pid.toString(16).padStart(6, "0")}`,
    cred: `0xffff888100${pid.toString(16).padStart(6, "0")}`,
  };
}

/** A live module with the given name and taint letters. */
export function fakeModule(name: string, taintFlags = ""): Module {
  return {
    name,
    module: "0xffffffffc0001000",
    base: "0xffffffffc0002000",
    size: 16384,
    state: "live",
    refcount: 0,
    taints: taintFlags ? "0x0000000000003000" : "0x0000000000000000",
    taintFlags,
  };
}

/** An IPv4 socket between the given ports, held by `owners` (pids, each with fd 3). */
export function fakeSocket(
  protocol: Socket["protocol"],
  state: string,
  localPort: number,
  remotePort: number,
  owners: number[] = [],
): Socket {
  return {
    protocol,
    family: "inet",
    state,
    localAddress: "10.0.0.1",
    localPort,
    remoteAddress: remotePort ? "10.0.0.2" : "0.0.0.0",
    remotePort,
    inode: 10_000 + localPort,
    sock: `0xffff888200${localPort.toString(16).padStart(6, "0")}`,
    owners: owners.map((pid) => ({ pid, fd: 3 })),
  };
}

/** A regular file open at `fd`. */
export function fakeFile(fd: number, path: string): OpenFile {
  return {
    fd,
    type: "file",
    inode: 100 + fd,
    path,
    pathComplete: true,
    file: `0xffff888300${fd.toString(16).padStart(6, "0")}`,
  };
}

interface Guest {
  status: VmStatus;
  /** What the guest's kernel holds now; a fetch copies it into a snapshot. */
  processes: Process[];
  modules: ModulesAnswer;
  sockets: Socket[];
  /** Open files by pid; a process of `processes` without an entry has none. */
  files: Map<number, OpenFile[]>;
  /** By view, and for files by `files:PID`. */
  snapshots: Map<string, Snapshot<unknown>>;
  recent: FetchRecord[];
  fetches: number;
  failures: number;
}

/** A monitor over guests held in memory, with a real alert store in memory. */
export class FakeMonitor implements Monitor, Disposable {
  /** The current time in epoch milliseconds; tests move it. */
  now = 1_700_000_000_000;
  /** How long the next fetches take, in milliseconds. */
  fetchMs = 5;
  /** Prometheus text that {@linkcode FakeMonitor.metrics} answers. */
  metricsText = "# TYPE ebpfmon_fetches_total counter\nebpfmon_fetches_total 0\n";
  readonly clock = (): number => this.now;
  readonly #guests = new Map<string, Guest>();
  readonly #alerts = AlertStore.open(":memory:", { resolveAfter: 2, clock: () => this.now });
  readonly #listeners = new Set<(change: AlertChange) => void>();

  /**
   * Adds a guest whose kernel holds `processes`, no modules and no sockets; its agent is up
   * until {@linkcode setDown}.
   */
  addVm(name: string, processes: Process[]): this {
    const agent = `10.0.0.${this.#guests.size + 1}:8046`;
    this.#guests.set(name, {
      status: {
        name,
        agent,
        agents: [agent],
        state: "up",
        refreshMs: 1000,
        events: [],
      },
      processes,
      modules: { supported: true, modules: [] },
      sockets: [],
      files: new Map(),
      snapshots: new Map(),
      recent: [],
      fetches: 0,
      failures: 0,
    });
    return this;
  }

  /** Replaces what the guest's kernel holds; snapshots taken before keep what they had. */
  setProcesses(name: string, processes: Process[]): void {
    this.#guest(name).processes = processes;
  }

  /** Replaces the guest's module list (or makes it unsupported). */
  setModules(name: string, modules: ModulesAnswer): void {
    this.#guest(name).modules = modules;
  }

  setSockets(name: string, sockets: Socket[]): void {
    this.#guest(name).sockets = sockets;
  }

  /** Replaces the open files of the guest's process `pid`. */
  setFiles(name: string, pid: number, files: OpenFile[]): void {
    this.#guest(name).files.set(pid, files);
  }

  /** Takes the guest's agent down (or brings it back up). */
  setDown(name: string, down: boolean): void {
    this.#guest(name).status.state = down ? "down" : "up";
  }

  /** Number of fetches from the guest's agent (of one view), failed ones included. */
  fetchCount(name: string, view?: ViewName): number {
    const guest = this.#guest(name);
    if (view === undefined) return guest.fetches;
    return guest.recent.filter((record) => record.view === view).length;
  }

  vms(): VmStatus[] {
    return [...this.#guests.values()].map((guest) => structuredClone(guest.status));
  }

  vm(name: string): VmStatus {
    return structuredClone(this.#guest(name).status);
  }

  processes(name: string, options: ReadOptions = {}): Promise<ProcessesAnswer> {
    return this.#read(name, options, "processes", "processes", (guest) => guest.processes);
  }

  modules(name: string, options: ReadOptions = {}): Promise<Answer<ModulesAnswer>> {
    return this.#read(name, options, "modules", "modules", (guest) => guest.modules);
  }

  sockets(name: string, options: ReadOptions = {}): Promise<Answer<Socket[]>> {
    return this.#read(name, options, "sockets", "sockets", (guest) => guest.sockets);
  }

  files(name: string, pid: number, options: ReadOptions = {}): Promise<Answer<FilesAnswer>> {
    return this.#read(name, options, "files", `files:${pid}`, (guest) => {
      const process = guest.processes.find((candidate) => candidate.pid === pid);
      if (process === undefined) throw new NoSuchProcessError(pid);
      return { pid, task: process.task, files: guest.files.get(pid) ?? [] };
    });
  }

  refresh(name: string): Promise<Snapshot<Process[]>> {
    return this.#fetch(name, "processes", "processes", (guest) => guest.processes);
  }

  /** As the monitor reads: processes fresh while the agent is up, other views for refreshMs. */
  async #read<T>(
    name: string,
    options: ReadOptions,
    view: ViewName,
    key: string,
    take: (guest: Guest) => T,
  ): Promise<Answer<T>> {
    const guest = this.#guest(name);
    const cached = guest.snapshots.get(key) as Snapshot<T> | undefined;
    const maxAgeMs = options.maxAgeMs ??
      (view === "processes" ? undefined : guest.status.refreshMs);
    const fresh = cached !== undefined &&
      (maxAgeMs === undefined
        ? guest.status.state === "up"
        : this.now - cached.takenAt <= maxAgeMs);
    if (fresh) return { snapshot: cached, stale: false };
    try {
      return { snapshot: await this.#fetch(name, view, key, take), stale: false };
    } catch (error) {
      if (error instanceof AgentUnavailableError && options.allowStale && cached) {
        return { snapshot: cached, stale: true };
      }
      throw error;
    }
  }

  #fetch<T>(
    name: string,
    view: ViewName,
    key: string,
    take: (guest: Guest) => T,
  ): Promise<Snapshot<T>> {
    const guest = this.#guest(name);
    const ok = guest.status.state === "up";
    guest.fetches++;
    guest.recent.push({
      view,
      at: this.now,
      ms: this.fetchMs,
      mode: "prefetch",
      roundTrips: ok ? 1 : 0,
      bytes: ok ? 4096 : 0,
      ok,
    });
    if (!ok) {
      guest.failures++;
      const error = { at: this.now, message: "Cannot connect to the agent: connection refused" };
      guest.status.lastError = error;
      guest.status.events.push(error);
      const last = guest.snapshots.get(key);
      const age = last && this.now - last.takenAt;
      return Promise.reject(new AgentUnavailableError(name, "connection refused", age));
    }
    let value: T;
    try {
      value = structuredClone(take(guest));
    } catch (error) {
      return Promise.reject(error);
    }
    const snapshot: Snapshot<T> = {
      vm: name,
      takenAt: this.now,
      mode: "prefetch",
      stats: {
        mode: "prefetch",
        roundTrips: 1,
        bytes: 4096,
        ms: this.fetchMs,
        truncated: false,
        misses: 0,
        lookups: guest.processes.length,
      },
      value,
    };
    guest.snapshots.set(key, snapshot);
    if (view === "processes") guest.status.lastSnapshotAt = this.now;
    return Promise.resolve(snapshot);
  }

  stats(name: string): VmStats {
    const guest = this.#guest(name);
    const ok = guest.recent.filter((record) => record.ok);
    return {
      fetches: guest.fetches,
      failures: guest.failures,
      roundTrips: ok.length,
      bytes: ok.length * 4096,
      cacheHitRatio: 1,
      recent: structuredClone(guest.recent),
    };
  }

  metrics(): Promise<string> {
    return Promise.resolve(this.metricsText);
  }

  /** Stores a scan of the guest's findings taken now, and tells the subscribers. */
  applyFindings(name: string, findings: Finding[]): AlertChange[] {
    this.#guest(name);
    const changes = this.#alerts.apply(name, findings, this.now);
    for (const change of changes) this.#listeners.forEach((listener) => listener(change));
    return changes;
  }

  /** Raises a health alert of the guest (an agent unreachable or misbehaving) now. */
  raiseHealth(name: string, finding: Finding): AlertChange[] {
    this.#guest(name);
    const changes = this.#alerts.raise(name, finding, this.now);
    for (const change of changes) this.#listeners.forEach((listener) => listener(change));
    return changes;
  }

  /** Subscribers of the alert stream now. */
  get subscribers(): number {
    return this.#listeners.size;
  }

  alerts(query: AlertQuery = {}): Alert[] {
    return this.#alerts.list(query);
  }

  alertsAfter(id: number, limit?: number): AlertChange[] {
    return this.#alerts.eventsAfter(id, limit);
  }

  subscribeAlerts(listener: (change: AlertChange) => void): () => void {
    const entry = (change: AlertChange) => listener(change);
    this.#listeners.add(entry);
    return () => this.#listeners.delete(entry);
  }

  [Symbol.dispose](): void {
    this.#alerts.close();
  }

  #guest(name: string): Guest {
    const guest = this.#guests.get(name);
    if (guest === undefined) throw new UnknownVmError(name);
    return guest;
  }
}
