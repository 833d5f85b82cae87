/**
 * The answers of guest memory, READ and PREFETCH: each checked against the protocol's limits,
 * then run on the walker (the last object the connection loaded, else the default one) in its
 * turn, its records streamed as DATA frames and closed by END. For PREFETCH it keeps what each
 * connection's next request builds on: its last plan as checked, and the base of its next delta
 * answer.
 *
 * @module
 */

import {
  type Channel,
  DataFrameBuilder,
  decodePlan,
  encodePlan,
  type EndStats,
  ErrorCode,
  type Frame,
  FrameType,
  kernelHalfOf,
  LIMITS,
  PlanError,
  PrefetchTarget,
  StopReason,
  unpackPlan,
} from "../protocol/mod.ts";
import { endFrame, errorFrame } from "./_closing_frames.ts";
import type { WalkerQueue } from "./_walker_queue.ts";
import { DeltaEncoder, type RememberedAnswer } from "./delta.ts";
import type { LoadedObjects } from "./objects.ts";
import type { RunResult, Walker } from "./walker.ts";

const U64_END = 1n << 64n;

/**
 * DATA frame bytes past which the agent sends what it has: the IDS decodes a frame while the
 * next is drained and encrypted, instead of waiting for a whole 1 MiB. It is where the agent's
 * CPU per byte sent stops falling: writes of one page cost 3.5 times as much per MiB, writes of
 * 256 KiB or 1 MiB no less (`deno task bench:encryption`).
 */
const FLUSH_AT = 64 << 10;

/** What {@linkcode MemoryAnswers} runs on, and through. */
export interface MemoryAnswersOptions {
  /** The walker's queue, which every answer waits its turn in and writes through. */
  queue: WalkerQueue;
  /** The objects connections loaded: a connection's walker is the last it loaded. */
  objects: LoadedObjects;
  /** The default walker (the embedded object), when the agent loaded one at start. */
  walker: Walker | undefined;
  /** The guest kernel's features, as HELLO tells them: where its half of the addresses starts. */
  features: string[];
}

/** READ and PREFETCH, for every connection of an agent. */
export class MemoryAnswers {
  #queue: WalkerQueue;
  #objects: LoadedObjects;
  #walker: Walker | undefined;
  #features: string[];
  /** Reused by every request: requests run one at a time. */
  #builder = new DataFrameBuilder(undefined, FLUSH_AT);
  /** Per connection: the generation its next delta answer gets, and its last one remembered. */
  #deltas = new Map<Channel, { next: number; answer?: RememberedAnswer }>();
  /** Each connection's last plan, as it came and as checked. */
  #plans = new WeakMap<Channel, { wire: Uint8Array; checked: Uint8Array }>();

  constructor(options: MemoryAnswersOptions) {
    this.#queue = options.queue;
    this.#objects = options.objects;
    this.#walker = options.walker;
    this.#features = options.features;
  }

  /** `channel` is gone: what its next delta would have built on is forgotten. */
  forget(channel: Channel): void {
    this.#deltas.delete(channel);
  }

  /** Answers a READ of `len` bytes at `addr`: within `LIMITS.maxRead` and the kernel half. */
  async read(channel: Channel, id: number, addr: bigint, len: number): Promise<void> {
    const problem = len === 0
      ? "length is 0"
      : len > LIMITS.maxRead
      ? `length ${len} exceeds ${LIMITS.maxRead}`
      : addr < kernelHalfOf(this.#features) || addr + BigInt(len) > U64_END
      ? `[0x${addr.toString(16)}, +${len}) is not in the kernel half`
      : undefined;
    if (problem) {
      const code = len > LIMITS.maxRead ? ErrorCode.TOO_LARGE : ErrorCode.FAULT;
      await this.#queue.send(channel, errorFrame(id, code, `Cannot read: ${problem}`));
      return;
    }
    await this.#exclusive(
      channel,
      id,
      (walker) => walker.read(addr, len),
      (result) =>
        result.stop === StopReason.COMPLETE
          ? undefined
          : `Cannot read ${len} bytes at 0x${addr.toString(16)}: kernel read failed (errno ${-result
            .error})`,
    );
  }

  /** Answers a PREFETCH of the task list or of a plan, whole or as a delta of the last answer. */
  async prefetch(
    channel: Channel,
    frame: Extract<Frame, { type: typeof FrameType.PREFETCH }>,
  ): Promise<void> {
    const { id, maxObjects, maxBytes } = frame;
    if (maxObjects > LIMITS.maxRecords || maxBytes > LIMITS.maxPrefetchBytes) {
      await this.#queue.send(
        channel,
        errorFrame(
          id,
          ErrorCode.TOO_LARGE,
          `Cannot prefetch ${maxObjects} objects / ${maxBytes} bytes: limits are ${LIMITS.maxRecords} / ${LIMITS.maxPrefetchBytes}`,
        ),
      );
      return;
    }
    const limits = { maxObjects, maxBytes };
    if (frame.target === PrefetchTarget.TASKS) {
      await this.#exclusive(
        channel,
        id,
        (walker) => walker.walkTasks(limits),
        () => undefined,
        this.#deltaFor(channel, frame.delta),
      );
      return;
    }
    let plan: Uint8Array;
    try {
      plan = this.#checkedPlan(channel, frame.plan);
    } catch (error) {
      if (!(error instanceof PlanError)) throw error;
      await this.#queue.send(
        channel,
        errorFrame(id, ErrorCode.BAD_FRAME, `Cannot serve PREFETCH: ${error.message}`),
      );
      return;
    }
    await this.#exclusive(
      channel,
      id,
      (walker) => walker.walkPlan(plan, limits),
      () => undefined,
      this.#deltaFor(channel, frame.delta),
    );
  }

  /**
   * The plan of a PREFETCH as the walker takes it. Decoding checks every limit and reference;
   * encoding it again hands the walker the checked plan with every unused byte zeroed, in a
   * buffer of its own. A connection's refreshes send the same plan again and again: the same
   * bytes as its last are that plan, checked already.
   * @throws {PlanError} naming what is wrong with it.
   */
  #checkedPlan(channel: Channel, wire: Uint8Array): Uint8Array {
    const last = this.#plans.get(channel);
    if (last && sameBytes(last.wire, wire)) return last.checked;
    const checked = encodePlan(decodePlan(unpackPlan(wire)));
    this.#plans.set(channel, { wire: wire.slice(), checked });
    return checked;
  }

  /**
   * The encoder of a PREFETCH that asked for a delta: against what this connection's last delta
   * answer remembered when `base` is its generation, else whole. Either way what was remembered
   * is forgotten now: the answer being made replaces it (or nothing does, if it fails).
   */
  #deltaFor(channel: Channel, delta: { base: number } | undefined): DeltaEncoder | undefined {
    if (!delta) return undefined;
    let state = this.#deltas.get(channel);
    if (!state) this.#deltas.set(channel, state = { next: 1 });
    const base = delta.base !== 0 && state.answer?.generation === delta.base
      ? state.answer
      : undefined;
    state.answer = undefined;
    return new DeltaEncoder(base, state.next++);
  }

  /**
   * Runs one walker request with the walker to itself (the last object this connection loaded,
   * else the default one), streams its records as DATA frames and closes with END (or ERROR when
   * `failure` names a problem, or there is no walker).
   */
  #exclusive(
    channel: Channel,
    id: number,
    run: (walker: Walker) => RunResult,
    failure: (result: RunResult) => string | undefined,
    delta?: DeltaEncoder,
  ): Promise<void> {
    return this.#queue.serial(channel, async () => {
      const walker = this.#objects.walkerOf(channel) ?? this.#walker;
      if (!walker) {
        const message = "Cannot walk: this agent was started without a default object, and this " +
          "connection loaded none (send LOAD first)";
        await this.#queue.send(channel, errorFrame(id, ErrorCode.NOT_READY, message));
        return;
      }
      const started = performance.now();
      let result = run(walker);
      const problem = failure(result);
      if (problem) {
        walker.discard();
        await this.#queue.send(channel, errorFrame(id, ErrorCode.FAULT, problem));
        return;
      }
      const builder = this.#builder;
      // The last DATA frame goes with END in one write: an on-demand READ is then one write and
      // one TLS record, about 30% less of the agent's CPU per READ than two (bench:encryption).
      let last: Uint8Array | undefined;
      let more = true;
      try {
        while (more) {
          more = walker.drainInto(builder, delta);
          // A walk the full ring stopped goes on once its records are out of the ring.
          const resumed = more ? undefined : walker.resume();
          if (resumed) [result, more] = [resumed, true];
          if (!builder.records) continue;
          if (more) await this.#queue.send(channel, builder.take(id));
          else last = builder.take(id);
        }
      } finally {
        walker.discard();
      }
      const end = endFrame(id, {
        objects: result.objects,
        bytes: result.bytes,
        faults: result.faults,
        pruned: result.pruned,
        guestNs: result.guestNs,
        agentNs: Math.round((performance.now() - started) * 1e6),
        stop: result.stop as StopReason,
        root: result.root,
        ...(delta ? this.#remember(channel, delta) : {}),
      });
      await this.#queue.send(channel, last ? joined(last, end) : end);
    });
  }

  /** Keeps the answer `delta` framed as the connection's base for the next delta; END's fields. */
  #remember(channel: Channel, delta: DeltaEncoder): Pick<EndStats, "generation" | "carried"> {
    const state = this.#deltas.get(channel);
    if (!state || !delta.complete) return { generation: 0, carried: delta.carried };
    state.answer = delta.answer();
    return { generation: state.answer.generation, carried: delta.carried };
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Two frames in one buffer, for one write. */
function joined(first: Uint8Array, second: Uint8Array): Uint8Array {
  const both = new Uint8Array(first.length + second.length);
  both.set(first);
  both.set(second, first.length);
  return both;
}
