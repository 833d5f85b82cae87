/**
 * Taking one snapshot of a session: a fresh cache, one PREFETCH of the view's plan into it (the
 * plan built and encoded once per copy mode when the view names it; the last answer kept as the
 * base the next delta is asked against), then the view over the cache, and what it all cost.
 *
 * @module
 */

import {
  encodePlan,
  FEATURE_PACKED_PLANS,
  packPlan,
  PrefetchTarget,
  StopReason,
} from "../../protocol/mod.ts";
import { type CopyMode, PlanBuilder } from "../kernel/mod.ts";
import {
  type AddressSpace,
  AnswerBuilder,
  type AnswerRecords,
  MemoryCache,
  RemoteMemory,
} from "../memory/mod.ts";
import type { AgentClient, Meter } from "./client.ts";
import {
  DEFAULT_FULL_EVERY,
  type Mode,
  type PrefetchLimits,
  type SnapshotStats,
  type View,
} from "./snapshot.ts";

const STOP_NAMES = new Map<number, string>(
  Object.entries(StopReason).map(([name, code]) => [code, name.toLowerCase().replaceAll("_", "-")]),
);

/** Most named plans a session keeps (each a few tens of KB). */
const MAX_PLANS = 32;

const COPY_MODES: Record<Exclude<Mode, "on-demand">, CopyMode> = {
  prefetch: "whole",
  selective: "selective",
};

/** Takes the snapshots of one session (one connection to one agent). */
export class SnapshotTaker {
  #client: AgentClient;
  #space: AddressSpace;
  #live: (meter: Meter) => RemoteMemory;
  #fullEvery = DEFAULT_FULL_EVERY;
  /** The last answer of a prefetch, and how many deltas were asked since the last whole one. */
  #base: AnswerRecords | undefined;
  #deltas = 0;

  /** Encoded plans of views that name theirs, by mode and name. */
  readonly #plans = new Map<string, Uint8Array | undefined>();

  /** `live` reads the guest anew, for a view's `confirm` ({@linkcode GuestSession.liveMemory}). */
  constructor(client: AgentClient, space: AddressSpace, live: (meter: Meter) => RemoteMemory) {
    this.#client = client;
    this.#space = space;
    this.#live = live;
  }

  /** Every how many prefetches one is asked whole ({@linkcode GuestSession.fullEvery}). */
  get fullEvery(): number {
    return this.#fullEvery;
  }

  set fullEvery(n: number) {
    this.#fullEvery = n;
    if (n === 1) this.#base = undefined;
  }

  /**
   * The encoded plan of `view` in `mode`, or undefined when it has no roots (the view then reads
   * on demand only); kept when the view names it.
   */
  #planOf<T>(mode: CopyMode, view: View<T>): Uint8Array | undefined {
    const key = view.planKey === undefined ? undefined : `${mode} ${view.planKey}`;
    if (key !== undefined && this.#plans.has(key)) return this.#plans.get(key);
    const builder = new PlanBuilder(mode, this.#space);
    view.plan(builder);
    const plan = builder.build();
    // Packed for an agent that takes it: most of the plan's fixed layout is unused slots.
    const packed = this.#client.info.features.includes(FEATURE_PACKED_PLANS);
    const encoded = !plan.roots.length
      ? undefined
      : packed
      ? packPlan(encodePlan(plan))
      : encodePlan(plan);
    if (key !== undefined) {
      if (this.#plans.size >= MAX_PLANS) this.#plans.clear();
      this.#plans.set(key, encoded);
    }
    return encoded;
  }

  /** Takes one snapshot of `view` in `mode`, begun at `started`, its requests counted in `meter`. */
  async take<T>(
    mode: Mode,
    view: View<T>,
    limits: PrefetchLimits,
    started: number,
    meter: Meter,
  ): Promise<{ value: T; stats: SnapshotStats }> {
    const cache = new MemoryCache();
    const space = this.#space;
    const memory = new RemoteMemory(
      cache,
      (addr, len) => this.#client.read(space.fromKAddr(addr), len, meter),
      space,
    );
    let prefetch: SnapshotStats["prefetch"];
    const planned = mode === "on-demand" ? undefined : this.#planOf(COPY_MODES[mode], view);
    // A view that found nothing to walk (no roots) reads on demand only.
    if (planned) {
      let rejected = 0;
      const batch = cache.batch();
      const asks = this.#fullEvery > 1;
      const base = asks && this.#deltas < this.#fullEvery - 1 ? this.#base : undefined;
      const answer = asks ? new AnswerBuilder() : undefined;
      let end;
      try {
        end = await this.#client.prefetch(
          PrefetchTarget.PLAN,
          limits,
          (high, low, payload, start, len) => {
            // In the guest's kernel half (the client checked), but maybe in none of its windows.
            const at = space.kaddrOf(high, low);
            if (at === undefined || !space.contains(at, len)) {
              rejected++;
              return true;
            }
            answer?.add(at, payload, start, len);
            // A refusal (the cache is full) cuts the answer off.
            return cache.insertFrom(at, payload, start, len, batch);
          },
          planned,
          meter,
          answer && {
            base: base?.generation ?? 0,
            onCarried: (first, count) => answer.carry(base!, first, count, cache, batch),
          },
        );
      } catch (error) {
        this.#base = undefined;
        throw error;
      }
      // The next delta goes against this answer, if the agent remembers it and it came whole.
      if (answer && end.generation && !rejected) {
        if (!this.#base || end.generation > this.#base.generation) {
          this.#base = answer.finish(end.generation);
          this.#deltas = base ? this.#deltas + 1 : 0;
        }
      } else if (answer) {
        this.#base = undefined;
      }
      prefetch = {
        objects: end.objects,
        bytes: end.bytes,
        guestMs: end.guestNs / 1e6,
        agentMs: end.agentNs / 1e6,
        stop: STOP_NAMES.get(end.stop) ?? String(end.stop),
        pruned: end.pruned,
        rejected,
        delta: base !== undefined,
        carried: answer?.carried ?? 0,
        carriedBytes: answer?.carriedBytes ?? 0,
      };
    }
    const result = await view.read(memory, this.#live(meter));
    return {
      value: result.value,
      stats: {
        mode,
        roundTrips: meter.roundTrips,
        bytes: meter.bytes,
        ms: performance.now() - started,
        truncated: result.truncated,
        ...(result.reason ? { reason: result.reason } : {}),
        misses: memory.stats.misses,
        lookups: cache.stats.hits + cache.stats.misses,
        ...(prefetch ? { prefetch } : {}),
      },
    };
  }
}
