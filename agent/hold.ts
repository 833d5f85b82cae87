/**
 * Holding the monitored workload still: the cgroups the agent's operator allows it to freeze
 * (`--hold-cgroup`), frozen on the IDS's HOLD for at most a capped time, so that a snapshot of
 * many requests (on-demand mode) reads lists that do not change under it.
 *
 * The operator decides what may be held; a HOLD can only freeze that, never more:
 * - Each cgroup is checked when the agent starts (`hold_cgroup.ts`): an absolute path to a
 *   directory of a cgroup v2 hierarchy (frozen with `cgroup.freeze`, confirmed by `frozen 1` in
 *   `cgroup.events`) or of a v1 `freezer` hierarchy (`freezer.state` FROZEN / THAWED), not a
 *   hierarchy's root, and not holding the agent itself: a cgroup that is the agent's own, or one
 *   of its ancestors, is refused (`/proc/self/cgroup`). The agent must never freeze itself. That
 *   last check runs again on every HOLD: the guest may move the agent after it started.
 * - A hold lasts at most `min(maxMs asked, the agent's cap)`; a timer thaws it then. It also ends
 *   on RELEASE, when its connection closes, when the agent closes (SIGINT, SIGTERM) and, as a last
 *   resort, when the agent's process exits through `Deno.exit`.
 * - One hold at a time, across connections. A cgroup someone else froze is left alone: the HOLD
 *   is refused rather than thawing it later.
 * - Freezing is waited for within a bound; a cgroup that does not freeze in time is thawed and
 *   the HOLD refused.
 *
 * A hold is the only thing that writes to cgroups (`hold_cgroup.ts` holds the writes). The agent
 * still interprets no guest memory: a hold only stops and restarts the workload's tasks.
 *
 * @module
 */

import {
  EMPTY_END_STATS,
  ErrorCode,
  type Frame,
  FrameType,
  type HoldAnswer,
  HoldState,
  LIMITS,
} from "../protocol/mod.ts";
import {
  type CgroupFacts,
  containsAgent,
  freeze,
  frozenElsewhere,
  type HoldCgroup,
  isFrozen,
  resolveHoldCgroup,
  systemFacts,
} from "./hold_cgroup.ts";

/** Default of the agent's own cap on a hold, in milliseconds (the protocol's limit). */
export const DEFAULT_MAX_HOLD_MS = LIMITS.maxHoldMs;
/** Longest the agent waits for the kernel to freeze every task of a cgroup. */
const FREEZE_TIMEOUT_MS = 1000;

/** A HOLD or RELEASE that cannot be served: the ERROR frame's code and message. */
export class HoldError extends Error {
  constructor(message: string, readonly code: ErrorCode) {
    super(message);
    this.name = "HoldError";
  }
}

/** Options of {@linkcode Holder.open}. */
export interface HolderOptions {
  /** The agent's own cap on a hold, 1..LIMITS.maxHoldMs. @default LIMITS.maxHoldMs */
  maxHoldMs?: number;
  log?: (line: string) => void;
  facts?: CgroupFacts;
}

interface Current {
  owner: object;
  started: number;
  capMs: number;
  freezeNs: number;
  timer: ReturnType<typeof setTimeout>;
}

const nsSince = (start: number) => Math.round((performance.now() - start) * 1e6);

/** The cgroups an agent may hold, and the one hold there may be at a time. */
export class Holder {
  #cgroups: HoldCgroup[];
  #maxMs: number;
  #log: (line: string) => void;
  #facts: CgroupFacts;
  #current: Current | undefined;
  /** Holds their cap ended, kept for their owner's RELEASE to report. */
  #expired = new WeakMap<object, HoldAnswer>();
  #onUnload = () => this.close();

  private constructor(
    cgroups: HoldCgroup[],
    maxMs: number,
    log: (line: string) => void,
    facts: CgroupFacts,
  ) {
    this.#cgroups = cgroups;
    this.#maxMs = maxMs;
    this.#log = log;
    this.#facts = facts;
    globalThis.addEventListener("unload", this.#onUnload);
  }

  /**
   * Checks every directory (see {@linkcode resolveHoldCgroup}).
   * @throws {Error} for the first one the agent may not hold, or a bad cap.
   */
  static open(dirs: readonly string[], options: HolderOptions = {}): Holder {
    const maxMs = options.maxHoldMs ?? DEFAULT_MAX_HOLD_MS;
    if (!Number.isSafeInteger(maxMs) || maxMs < 1 || maxMs > LIMITS.maxHoldMs) {
      throw new RangeError(`Invalid hold cap ${maxMs} ms: expected 1..${LIMITS.maxHoldMs}`);
    }
    const facts = options.facts ?? systemFacts();
    const cgroups = dirs.map((dir) => resolveHoldCgroup(dir, facts));
    return new Holder(cgroups, maxMs, options.log ?? (() => {}), facts);
  }

  /** The directories it may hold. */
  get dirs(): string[] {
    return this.#cgroups.map((c) => c.dir);
  }

  /**
   * Freezes every cgroup for `owner`, for at most `askedMs` (and the agent's cap), and resolves
   * once the kernel says all are frozen.
   * @throws {HoldError} when it cannot, with nothing left frozen.
   */
  async hold(owner: object, askedMs: number): Promise<HoldAnswer> {
    const current = this.#current;
    if (current) {
      throw new HoldError(
        current.owner === owner
          ? "Cannot hold: this connection holds the workload already (RELEASE it first)"
          : "Cannot hold: another connection holds the workload",
        ErrorCode.NOT_READY,
      );
    }
    for (const cgroup of this.#cgroups) {
      const problem = containsAgent(cgroup, this.#facts) ?? frozenElsewhere(cgroup);
      if (problem) {
        this.#log(`refused to hold "${cgroup.dir}": ${problem}`);
        throw new HoldError(`Cannot hold "${cgroup.dir}": ${problem}`, ErrorCode.FAULT);
      }
    }
    this.#expired.delete(owner);
    const capMs = Math.min(askedMs, this.#maxMs);
    const started = performance.now();
    const hold: Current = {
      owner,
      started,
      capMs,
      freezeNs: 0,
      timer: setTimeout(() => this.#expire(hold), capMs),
    };
    this.#current = hold;
    try {
      for (const cgroup of this.#cgroups) freeze(cgroup, true);
      const deadline = started + Math.min(FREEZE_TIMEOUT_MS, capMs);
      for (const cgroup of this.#cgroups) {
        for (let polls = 1; !isFrozen(cgroup); polls++) {
          // A v1 freezer that found a task busy stays FREEZING until FROZEN is written again
          // (cgroup-v1/freezer-subsystem.rst): retry every 50 polls.
          if (cgroup.version === 1 && polls % 50 === 0) freeze(cgroup, true);
          if (this.#current !== hold) {
            throw new Error(`"${cgroup.dir}" did not freeze before the hold's cap of ${capMs} ms`);
          }
          if (performance.now() > deadline) {
            throw new Error(
              `"${cgroup.dir}" did not freeze within ${Math.min(FREEZE_TIMEOUT_MS, capMs)} ms`,
            );
          }
          await new Promise((resolve) => setTimeout(resolve, 1));
        }
      }
    } catch (error) {
      if (this.#current === hold) this.#end(hold);
      this.#expired.delete(owner);
      const message = `Cannot hold: ${(error as Error).message}; the workload is thawed`;
      this.#log(message);
      throw new HoldError(message, ErrorCode.FAULT);
    }
    hold.freezeNs = nsSince(started);
    return { state: HoldState.HOLDING, capMs, freezeNs: hold.freezeNs, heldNs: hold.freezeNs };
  }

  /** Thaws `owner`'s hold; says how it went (EXPIRED when its cap thawed it first). */
  release(owner: object): HoldAnswer {
    const current = this.#current;
    if (current?.owner === owner) return this.#end(current);
    const expired = this.#expired.get(owner);
    this.#expired.delete(owner);
    return expired ?? { state: HoldState.NONE, capMs: 0, freezeNs: 0, heldNs: 0 };
  }

  /** `owner` is gone (its connection closed): its hold, if any, ends now. */
  forget(owner: object): void {
    this.#expired.delete(owner);
    const current = this.#current;
    if (current?.owner !== owner) return;
    const ended = this.#end(current);
    this.#log(`thawed the workload: its holder's connection closed after ${ms(ended.heldNs)} ms`);
  }

  /** Ends any hold; the holder stays usable. Idempotent. */
  close(): void {
    if (this.#current) this.#end(this.#current);
  }

  /** Ends any hold and stops watching for the process's exit. */
  dispose(): void {
    this.close();
    globalThis.removeEventListener("unload", this.#onUnload);
  }

  #expire(hold: Current): void {
    if (this.#current !== hold) return;
    const ended = this.#end(hold);
    this.#expired.set(hold.owner, { ...ended, state: HoldState.EXPIRED });
    this.#log(`thawed the workload: its hold reached its cap of ${hold.capMs} ms`);
  }

  /** Thaws every cgroup (each whatever the others do) and clears the hold. */
  #end(hold: Current): HoldAnswer {
    clearTimeout(hold.timer);
    this.#current = undefined;
    for (const cgroup of this.#cgroups) {
      try {
        freeze(cgroup, false);
      } catch (error) {
        this.#log(`cannot thaw "${cgroup.dir}": ${(error as Error).message}`);
      }
    }
    return {
      state: HoldState.RELEASED,
      capMs: hold.capMs,
      freezeNs: hold.freezeNs,
      heldNs: nsSince(hold.started),
    };
  }
}

function ms(ns: number): string {
  return (ns / 1e6).toFixed(0);
}

/**
 * The answer to a HOLD or RELEASE of `owner`: HELD then END, or one ERROR (from an agent without
 * cgroups to hold, or when the hold cannot be taken).
 */
export async function answerHold(
  holder: Holder | undefined,
  owner: object,
  frame: Extract<Frame, { type: typeof FrameType.HOLD | typeof FrameType.RELEASE }>,
): Promise<Frame[]> {
  const { id } = frame;
  const started = performance.now();
  if (!holder) {
    const message = "Cannot hold the workload: this agent was started without --hold-cgroup, " +
      "so it may hold nothing";
    return [{ type: FrameType.ERROR, id, code: ErrorCode.UNSUPPORTED, message }];
  }
  let hold: HoldAnswer;
  try {
    hold = frame.type === FrameType.HOLD
      ? await holder.hold(owner, frame.maxMs)
      : holder.release(owner);
  } catch (error) {
    if (!(error instanceof HoldError)) throw error;
    return [{ type: FrameType.ERROR, id, code: error.code, message: error.message }];
  }
  return [
    { type: FrameType.HELD, id, hold },
    { type: FrameType.END, id, stats: { ...EMPTY_END_STATS, agentNs: nsSince(started) } },
  ];
}
