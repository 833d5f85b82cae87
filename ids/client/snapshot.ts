/**
 * What a snapshot is, whoever takes it: the modes that get its memory, the limits of its
 * prefetch, the stats it reports, and the view it runs ({@linkcode View}: its plan and its read
 * over guest memory). {@linkcode GuestSession.snapshot} takes one.
 *
 * @module
 */

import type { PlanBuilder } from "../kernel/mod.ts";
import type { RemoteMemory } from "../memory/mod.ts";
import type { HoldStats } from "./hold.ts";
export type { HoldStats };

/** How a snapshot gets its memory. */
export type Mode = "prefetch" | "selective" | "on-demand";
export const MODES: readonly Mode[] = ["prefetch", "selective", "on-demand"];

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
  /** Prefetch modes: what the in-guest walk returned. */
  prefetch?: {
    objects: number;
    bytes: number;
    /** Milliseconds the eBPF program ran in the guest kernel. */
    guestMs: number;
    /** Milliseconds from request to END in the agent. */
    agentMs: number;
    /** Why the walk stopped ("complete" when it did not stop early). */
    stop: string;
    /** Edges the walker did not follow because they lead deeper than the plan allows. */
    pruned: number;
    /** Records refused because their address is not a kernel address. */
    rejected: number;
    /**
     * Whether it was asked as a delta (against the session's previous answer, see
     * {@linkcode GuestSession.fullEvery}); `carried` records (`carriedBytes` bytes) of it were
     * unchanged since and came as references.
     */
    delta: boolean;
    carried: number;
    carriedBytes: number;
  };
  /** When the session holds the workload ({@linkcode GuestSession.holdMs}): how that went. */
  hold?: HoldStats;
}

/** Limits of a prefetch walk. */
export interface PrefetchLimits {
  maxObjects: number;
  maxBytes: number;
}

export const DEFAULT_PREFETCH_LIMITS: PrefetchLimits = { maxObjects: 1 << 20, maxBytes: 256 << 20 };

/** Every how many prefetches of a session one is asked whole, unless set otherwise. */
export const DEFAULT_FULL_EVERY = 10;

/** What a view returns to {@linkcode GuestSession.snapshot}. */
export interface ViewResult<T> {
  value: T;
  truncated: boolean;
  reason?: string;
}

/**
 * A view as a session runs it: its plan, and the view itself over guest memory. `confirm` reads
 * the guest anew (not from the snapshot), for re-checking a suspicion; its reads are counted in
 * the snapshot's round trips.
 */
export interface View<T> {
  plan(builder: PlanBuilder): void;
  read(memory: RemoteMemory, confirm: RemoteMemory): Promise<ViewResult<T>>;
  /**
   * Names the plan when it depends on nothing but the session (its kernel, and what it found
   * once): the session then builds and encodes it once per mode, and sends the same bytes again.
   */
  planKey?: string;
}
