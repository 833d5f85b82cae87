/**
 * One monitored guest: a connected agent, its kernel's types, and snapshots of its views in
 * either mode. Every snapshot starts from an empty cache: guest memory changes, so bytes from an
 * earlier snapshot are never served as current.
 *
 * @module
 */

import { PrefetchTarget, StopReason } from "../protocol/frames.ts";
import type { AgentClient } from "./client.ts";
import { loadBtf } from "./btf_store.ts";
import { parseBtf } from "./btf/mod.ts";
import { fromKAddr, type KAddr, toKAddr } from "./memory/address.ts";
import { MemoryCache } from "./memory/cache.ts";
import { RemoteMemory } from "./memory/guest_memory.ts";
import { type KernelTypes, resolveKernelTypes } from "./kernel/types.ts";
import { listProcesses, type Process } from "./linux/processes.ts";

/** How a snapshot gets its memory. */
export type Mode = "prefetch" | "on-demand";
export const MODES: readonly Mode[] = ["prefetch", "on-demand"];

/** What a snapshot cost and how it ended. */
export interface SnapshotStats {
  mode: Mode;
  /** Requests to the agent, each one network round trip. */
  roundTrips: number;
  /** Frame bytes received from the agent. */
  bytes: number;
  /** Wall-clock milliseconds of the snapshot. */
  ms: number;
  /** The view could not be completed. */
  truncated: boolean;
  reason?: string;
  /** Reads the cache could not serve (each fetched page by page). */
  misses: number;
  /** Cache lookups the view made; `1 - misses / lookups` is the hit ratio. */
  lookups: number;
  /** Prefetch mode: what the in-guest walk returned. */
  prefetch?: {
    objects: number;
    bytes: number;
    /** Milliseconds the eBPF program ran in the guest kernel. */
    guestMs: number;
    /** Milliseconds from request to END in the agent. */
    agentMs: number;
    /** Why the walk stopped ("complete" when it did not stop early). */
    stop: string;
    /** Records refused because their address is not a kernel address. */
    rejected: number;
  };
}

/** Limits of a prefetch walk. */
export interface PrefetchLimits {
  maxObjects: number;
  maxBytes: number;
}

export const DEFAULT_PREFETCH_LIMITS: PrefetchLimits = { maxObjects: 1 << 20, maxBytes: 256 << 20 };

const STOP_NAMES = new Map<number, string>(
  Object.entries(StopReason).map(([name, code]) => [code, name.toLowerCase().replace("_", "-")]),
);

/** A guest, ready for snapshots. Closing it closes the client. */
export class GuestSession implements Disposable {
  private constructor(
    readonly client: AgentClient,
    readonly types: KernelTypes,
    readonly anchor: KAddr,
  ) {}

  /**
   * Loads the guest's BTF (from `stateDir`'s store when known, else from the agent) and
   * resolves the kernel types.
   * @throws {LayoutError} when the guest kernel lacks a field the views need.
   */
  static async open(client: AgentClient, stateDir: string): Promise<GuestSession> {
    const anchor = toKAddr(client.info.anchor);
    if (anchor === undefined) {
      throw new Error(
        `Cannot use the agent: its anchor 0x${
          client.info.anchor.toString(16)
        } is not a kernel address`,
      );
    }
    const btf = parseBtf(await loadBtf(client, stateDir));
    return new GuestSession(client, resolveKernelTypes(btf), anchor);
  }

  /** The guest's process list, with what it cost. */
  async processes(
    mode: Mode,
    limits: PrefetchLimits = DEFAULT_PREFETCH_LIMITS,
  ): Promise<{ processes: Process[]; stats: SnapshotStats }> {
    const { value, stats } = await this.#snapshot(
      mode,
      PrefetchTarget.TASKS,
      limits,
      async (memory) => {
        const list = await listProcesses(memory, this.types, this.anchor);
        return { value: list.processes, truncated: list.truncated, reason: list.reason };
      },
    );
    return { processes: value, stats };
  }

  async #snapshot<T>(
    mode: Mode,
    target: PrefetchTarget,
    limits: PrefetchLimits,
    view: (memory: RemoteMemory) => Promise<{ value: T; truncated: boolean; reason?: string }>,
  ): Promise<{ value: T; stats: SnapshotStats }> {
    const started = performance.now();
    const before = this.client.counters;
    const cache = new MemoryCache();
    const memory = new RemoteMemory(
      cache,
      (addr, len) => this.client.read(fromKAddr(addr), len),
    );
    let prefetch: SnapshotStats["prefetch"];
    if (mode === "prefetch") {
      let rejected = 0;
      const end = await this.client.prefetch(target, limits, (addr, bytes) => {
        const at = toKAddr(addr);
        if (at === undefined) rejected++;
        else cache.insert(at, bytes);
      });
      prefetch = {
        objects: end.objects,
        bytes: end.bytes,
        guestMs: end.guestNs / 1e6,
        agentMs: end.agentNs / 1e6,
        stop: STOP_NAMES.get(end.stop) ?? String(end.stop),
        rejected,
      };
    }
    const result = await view(memory);
    const after = this.client.counters;
    return {
      value: result.value,
      stats: {
        mode,
        roundTrips: after.roundTrips - before.roundTrips,
        bytes: after.bytes - before.bytes,
        ms: performance.now() - started,
        truncated: result.truncated,
        ...(result.reason ? { reason: result.reason } : {}),
        misses: memory.stats.misses,
        lookups: cache.stats.hits + cache.stats.misses,
        ...(prefetch ? { prefetch } : {}),
      },
    };
  }

  close(): void {
    this.client.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
