/**
 * A view of a guest as the service keeps it: how it is taken through a session, its last
 * snapshot and the fetch under way; and which failures are the view's answer, not the agent's.
 *
 * @module
 */

import {
  type ClientCounters,
  type GuestSession,
  NoSuchProcessError,
  type SnapshotStats,
} from "../client/mod.ts";
import { LayoutError } from "../kernel/mod.ts";
import type { Snapshot, ViewName } from "./types.ts";

/** What one view's session call returns. */
interface Taken<T> {
  value: T;
  stats: SnapshotStats;
}

/** One view of a guest: how it is taken, its last snapshot, and the fetch under way. */
export interface Feed<T> {
  view: ViewName;
  /** The view as events name it: "sockets", "files of pid 42". */
  label: string;
  /**
   * A read that gives no max age is served a snapshot at most this old; when undefined, the
   * snapshot while the agent is up (the guest's loop keeps it fresh).
   */
  maxAgeMs?: number;
  take(session: GuestSession): Promise<Taken<T>>;
  snapshot?: Snapshot<T>;
  pending?: Promise<Snapshot<T>>;
}

/**
 * The view's own answer about the guest, not a failure of its agent: the process asked for does
 * not exist, or the guest kernel lacks what the view reads. The session stays up.
 */
export function isViewError(error: unknown): boolean {
  return error instanceof NoSuchProcessError || error instanceof LayoutError;
}

/** Round trips and bytes `session` spent since `before` (nothing without a session). */
export function spent(session?: GuestSession, before?: ClientCounters): ClientCounters {
  if (!session || !before) return { roundTrips: 0, bytes: 0 };
  const after = session.client.counters;
  return { roundTrips: after.roundTrips - before.roundTrips, bytes: after.bytes - before.bytes };
}
