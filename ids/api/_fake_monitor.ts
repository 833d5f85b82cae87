/**
 * An in-memory {@linkcode Monitor} for the API's tests and benchmarks: guests whose process
 * tables the test sets, snapshots taken on a clock the test moves, and agents it can take down.
 *
 * @module
 */

import type { Process } from "../linux/processes.ts";
import {
  AgentUnavailableError,
  type FetchRecord,
  type Monitor,
  type ProcessesAnswer,
  type ReadOptions,
  type Snapshot,
  UnknownVmError,
  type VmStats,
  type VmStatus,
} from "../service/types.ts";

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

interface Guest {
  status: VmStatus;
  /** What the guest's kernel holds now; a refresh copies it into a snapshot. */
  processes: Process[];
  snapshot?: Snapshot<Process[]>;
  recent: FetchRecord[];
  fetches: number;
  failures: number;
}

/** A monitor over guests held in memory. */
export class FakeMonitor implements Monitor {
  /** The current time in epoch milliseconds; tests move it. */
  now = 1_700_000_000_000;
  /** How long the next fetches take, in milliseconds. */
  fetchMs = 5;
  /** Prometheus text that {@linkcode FakeMonitor.metrics} answers. */
  metricsText = "# TYPE ebpfmon_fetches_total counter\nebpfmon_fetches_total 0\n";
  readonly clock = (): number => this.now;
  readonly #guests = new Map<string, Guest>();

  /** Adds a guest whose kernel holds `processes`; its agent is up until {@linkcode setDown}. */
  addVm(name: string, processes: Process[]): this {
    this.#guests.set(name, {
      status: {
        name,
        agent: `10.0.0.${this.#guests.size + 1}:8046`,
        state: "up",
        refreshMs: 1000,
        events: [],
      },
      processes,
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

  /** Takes the guest's agent down (or brings it back up). */
  setDown(name: string, down: boolean): void {
    this.#guest(name).status.state = down ? "down" : "up";
  }

  /** Number of fetches from the guest's agent, failed ones included. */
  fetchCount(name: string): number {
    return this.#guest(name).fetches;
  }

  vms(): VmStatus[] {
    return [...this.#guests.values()].map((guest) => structuredClone(guest.status));
  }

  vm(name: string): VmStatus {
    return structuredClone(this.#guest(name).status);
  }

  async processes(name: string, options: ReadOptions = {}): Promise<ProcessesAnswer> {
    const guest = this.#guest(name);
    const cached = guest.snapshot;
    const fresh = cached !== undefined &&
      (options.maxAgeMs === undefined
        ? guest.status.state === "up"
        : this.now - cached.takenAt <= options.maxAgeMs);
    if (fresh) return { snapshot: cached, stale: false };
    try {
      return { snapshot: await this.refresh(name), stale: false };
    } catch (error) {
      if (error instanceof AgentUnavailableError && options.allowStale && cached) {
        return { snapshot: cached, stale: true };
      }
      throw error;
    }
  }

  refresh(name: string): Promise<Snapshot<Process[]>> {
    const guest = this.#guest(name);
    const ok = guest.status.state === "up";
    guest.fetches++;
    guest.recent.push({
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
      const age = guest.snapshot && this.now - guest.snapshot.takenAt;
      return Promise.reject(new AgentUnavailableError(name, "connection refused", age));
    }
    guest.snapshot = {
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
      value: structuredClone(guest.processes),
    };
    guest.status.lastSnapshotAt = this.now;
    return Promise.resolve(guest.snapshot);
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

  #guest(name: string): Guest {
    const guest = this.#guests.get(name);
    if (guest === undefined) throw new UnknownVmError(name);
    return guest;
  }
}
