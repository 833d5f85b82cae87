/**
 * A snapshot with the monitored workload held still: HOLD before its first request, RELEASE
 * after its last (each one round trip, counted in the snapshot's), and how the hold went in its
 * stats. The agent decides what is held (its `--hold-cgroup`) and for how long at most.
 *
 * @module
 */

import { HoldState } from "../../protocol/mod.ts";
import type { AgentClient, Meter } from "./client.ts";
import { AgentError, AgentMisbehaviorError } from "./errors.ts";
import type { SnapshotStats } from "./snapshot.ts";

/** How a snapshot's hold of the workload went, as the agent measured it. */
export interface HoldStats {
  /**
   * `held`: frozen for the whole snapshot; `expired`: the agent's cap thawed it before the
   * snapshot ended; `refused`: not held (`error` says why), the snapshot was taken anyway.
   */
  state: "held" | "expired" | "refused";
  /** The longest the agent granted, in milliseconds. */
  capMs: number;
  /** Milliseconds the workload was frozen (from the freeze to the thaw). */
  heldMs: number;
  /** Milliseconds the kernel took to freeze every task of it. */
  freezeMs: number;
  error?: string;
}

/**
 * Runs `take` with the workload held for at most `holdMs`. An agent that refuses the hold (an
 * ERROR: it holds nothing, another hold runs, the freeze failed) does not fail the snapshot: it
 * is taken unheld, with `state: "refused"` and the agent's reason. A release is sent whatever
 * `take` does; an agent that breaks the protocol fails the snapshot.
 */
export async function holding<T>(
  client: AgentClient,
  holdMs: number,
  meter: Meter,
  started: number,
  take: () => Promise<{ value: T; stats: SnapshotStats }>,
): Promise<{ value: T; stats: SnapshotStats }> {
  let hold: HoldStats;
  try {
    const held = await client.hold(holdMs, meter);
    hold = { state: "held", capMs: held.capMs, heldMs: 0, freezeMs: held.freezeNs / 1e6 };
  } catch (error) {
    if (!(error instanceof AgentError) || error instanceof AgentMisbehaviorError) throw error;
    const { value, stats } = await take();
    return {
      value,
      stats: {
        ...stats,
        hold: { state: "refused", capMs: 0, heldMs: 0, freezeMs: 0, error: error.message },
      },
    };
  }
  let taken: { value: T; stats: SnapshotStats };
  try {
    taken = await take();
  } catch (error) {
    await client.release().catch(() => {});
    throw error;
  }
  const released = await client.release(meter);
  hold.heldMs = released.heldNs / 1e6;
  if (released.state !== HoldState.RELEASED) hold.state = "expired";
  return {
    value: taken.value,
    // The snapshot's time and round trips include the hold's.
    stats: {
      ...taken.stats,
      ms: performance.now() - started,
      roundTrips: meter.roundTrips,
      bytes: meter.bytes,
      hold,
    },
  };
}
