/**
 * The user side of `bpf/walk.bpf.c`: loads the object and attaches its programs to the trigger
 * (`walker_object.ts`), writes requests into the shared `.bss`, fires the trigger and hands out
 * the records the programs left in the ring buffer. The layouts mirror `bpf/walk.h`
 * (`_walk_layout.ts`).
 *
 * The walker copies bytes; it never interprets them.
 *
 * @module
 */

import { type DataFrameBuilder, PLAN_SIZE } from "../protocol/mod.ts";
import {
  OP_ANCHOR,
  OP_PLAN,
  OP_READ,
  OP_RESUME,
  OP_WALK_TASKS,
  PLAN_AT,
  REQ,
  RES,
  RING_RECORD_HEADER,
  SHARED_SIZE,
  STOP_RING_FULL,
  WALKER_READ_MAX,
} from "./_walk_layout.ts";
import type { DeltaEncoder } from "./delta.ts";
import { type BpfObject, currentThreadId, fireTrigger, type LoadedProgramEntry } from "./libbpf.ts";
import { loadWalkerObject, type WalkerOptions } from "./walker_object.ts";

/** Programs as HELLO and the agent's log name them: `name:tag` words, or "none". */
export function describePrograms(programs: readonly { name: string; tag: string }[]): string {
  return programs.length ? programs.map((p) => `${p.name}:${p.tag}`).join(" ") : "none";
}

/** What a program run reported. */
export interface RunResult {
  objects: number;
  bytes: number;
  faults: number;
  /** Nanoseconds the program ran, measured in the kernel. */
  guestNs: number;
  /** READ: 0, or the negative errno of the failed kernel read. */
  error: number;
  /** EBPFMON_STOP_* (0 = complete). */
  stop: number;
  /** PLAN: edges not followed because they lead deeper than the plan's max depth. */
  pruned: number;
  /** ANCHOR: the calling task; WALK: init_task; PLAN: the first root. */
  root: bigint;
}

/** Limits of one walk. */
export interface WalkLimits {
  maxObjects: number;
  maxBytes: number;
}

/**
 * The loaded walker programs. One request at a time: each run's records must be drained
 * (or discarded) before the next run. A request larger than the ring stops with
 * `StopReason.RING_FULL`; drain it and {@linkcode Walker.resume} continues it, until a run ends
 * for another reason. Close it to detach and unload everything.
 */
export class Walker implements Disposable {
  #obj: BpfObject;
  #shared: DataView;
  #ring: ReturnType<BpfObject["ring"]>;
  #seq = 0;
  /** The last run stopped with a full ring after copying something: it may be resumed. */
  #resumable = false;
  #closed = false;
  /** Every program of the object, as the kernel loaded it. */
  readonly programs: readonly LoadedProgramEntry[];

  private constructor(obj: BpfObject) {
    this.#obj = obj;
    this.programs = obj.loadedPrograms();
    const bss = obj.globals(".bss");
    if (bss.length < SHARED_SIZE) {
      throw new TypeError(
        `BPF object "${obj.name}" has a .bss of ${bss.length} bytes, expected ${SHARED_SIZE}`,
      );
    }
    this.#shared = new DataView(bss.buffer, bss.byteOffset, bss.byteLength);
    this.#ring = obj.ring("records");
  }

  /**
   * Checks, opens, configures, loads and attaches the walker, for this process only: every
   * program of the object is attached to the trigger (uprobe or uretprobe, as its section says;
   * see `loadWalkerObject`).
   * @throws {ObjectRefused} when the check refuses the object, or it is not a walker.
   * @throws {LibbpfError} when the kernel refuses (no BPF permission, verifier, no uprobes).
   */
  static async open(options: WalkerOptions = {}): Promise<Walker> {
    using stack = new DisposableStack();
    const obj = stack.use(await loadWalkerObject(options));
    const walker = new Walker(obj);
    stack.move();
    return walker;
  }

  /** Bytes the ring buffer holds: the most one walk can return. */
  get ringBytes(): number {
    return this.#ring.size;
  }

  /** The address of the agent's own task_struct. */
  anchor(): bigint {
    return this.#run(OP_ANCHOR, {}).root;
  }

  /**
   * Copies `len` bytes at `addr` into the ring, in records of at most 4096 bytes.
   * Drain them with {@linkcode drain}.
   */
  read(addr: bigint, len: number): RunResult {
    if (len > WALKER_READ_MAX) {
      throw new RangeError(`Cannot read ${len} bytes: the limit is ${WALKER_READ_MAX}`);
    }
    return this.#run(OP_READ, { addr, len: BigInt(len) });
  }

  /** Walks init_task's task list into the ring. Drain the records with {@linkcode drain}. */
  walkTasks(limits: WalkLimits): RunResult {
    return this.#run(OP_WALK_TASKS, {
      maxObjects: BigInt(limits.maxObjects),
      maxBytes: BigInt(limits.maxBytes),
    });
  }

  /**
   * Walks a plan (the bytes of `encodePlan`, exactly `PLAN_SIZE`) into the ring. Records come in
   * depth-first pre-order (bpf/plan_walk.h). The plan is not checked here beyond its size: the
   * in-guest walker treats it as hostile, and callers that take plans from the wire decode it
   * first. Drain the records with {@linkcode drain}.
   */
  walkPlan(plan: Uint8Array, limits: WalkLimits): RunResult {
    if (plan.length !== PLAN_SIZE) {
      throw new RangeError(`Cannot walk a plan of ${plan.length} bytes: expected ${PLAN_SIZE}`);
    }
    return this.#run(OP_PLAN, {
      maxObjects: BigInt(limits.maxObjects),
      maxBytes: BigInt(limits.maxBytes),
      plan,
    });
  }

  /**
   * Hands records left by the last run to `onRecord` (address and a view of the bytes, valid
   * only during the call) until the ring is empty or `onRecord` returns false.
   * @returns true when records remain.
   */
  drain(onRecord: (addr: bigint, bytes: Uint8Array) => boolean): boolean {
    let more = false;
    this.#ring.drain((record) => {
      const view = new DataView(record.buffer, record.byteOffset, RING_RECORD_HEADER);
      const len = view.getUint32(8, true);
      if (len > record.length - RING_RECORD_HEADER) {
        throw new RangeError(
          `Ring record claims ${len} bytes but holds ${record.length - RING_RECORD_HEADER}`,
        );
      }
      const bytes = record.subarray(RING_RECORD_HEADER, RING_RECORD_HEADER + len);
      if (!onRecord(view.getBigUint64(0, true), bytes)) {
        more = true;
        return false;
      }
      return true;
    });
    return more;
  }

  /**
   * As {@linkcode drain}, appending each record to `builder` straight from the ring (no view, no
   * BigInt per record) until the ring is empty or the builder asks for a flush; with `delta`,
   * framed by it (records the base holds go as carried runs).
   * @returns true when records remain.
   */
  drainInto(builder: DataFrameBuilder, delta?: DeltaEncoder): boolean {
    let more = false;
    this.#ring.drainAt((data, view, at, size) => {
      const len = view.getUint32(at + 8, true);
      if (len > size - RING_RECORD_HEADER) {
        throw new RangeError(
          `Ring record claims ${len} bytes but holds ${size - RING_RECORD_HEADER}`,
        );
      }
      const framed = delta
        ? delta.append(builder, data, at, len)
        : builder.appendFrom(data, at, at + RING_RECORD_HEADER, len);
      if (!framed) {
        more = true;
        return false;
      }
      return true;
    });
    // A carried run still open at the end of the ring goes in this frame, or the next.
    if (!more && delta && !delta.flush(builder)) more = true;
    return more;
  }

  /**
   * Continues the last READ or walk where the full ring stopped it, once its records are
   * drained: the same request, with its budgets and, for a plan, the objects it has visited. The
   * records are those one run with a larger ring would have copied after the ones drained.
   * @returns the request's result so far (its counts since its first run), or undefined when
   * there is nothing to continue: the last run ended for another reason, or a full ring stopped
   * it before it copied anything (a record larger than the ring), or its records were discarded.
   * @throws {TypeError} when records of the last run are still in the ring.
   */
  resume(): RunResult | undefined {
    if (this.#closed) throw new TypeError("Cannot use the walker: it is closed");
    if (!this.#resumable) return undefined;
    if (this.#ring.pending) {
      throw new TypeError("Cannot resume the walk: records of its last run are still in the ring");
    }
    const s = this.#shared;
    const before = Number(s.getBigUint64(RES.objects, true));
    // The program writes the request's seq back: cleared, it tells whether the program ran.
    s.setBigUint64(RES.seq, 0n, true);
    return this.#fire(OP_RESUME, before);
  }

  /** Drops every record left in the ring: the last request can no longer be resumed. */
  discard(): void {
    if (this.#closed) return;
    this.#resumable = false;
    this.#ring.drain(() => true);
  }

  #run(
    op: number,
    args: {
      addr?: bigint;
      len?: bigint;
      maxObjects?: bigint;
      maxBytes?: bigint;
      plan?: Uint8Array;
    },
  ): RunResult {
    if (this.#closed) throw new TypeError("Cannot use the walker: it is closed");
    const s = this.#shared;
    this.discard();
    s.setBigUint64(REQ.seq, BigInt(++this.#seq), true);
    s.setBigUint64(REQ.addr, args.addr ?? 0n, true);
    s.setBigUint64(REQ.len, args.len ?? 0n, true);
    s.setBigUint64(REQ.maxObjects, args.maxObjects ?? 0n, true);
    s.setBigUint64(REQ.maxBytes, args.maxBytes ?? 0n, true);
    if (args.plan) new Uint8Array(s.buffer, s.byteOffset + PLAN_AT, PLAN_SIZE).set(args.plan);
    return this.#fire(op, 0);
  }

  /**
   * Fires the trigger for `op` (the request already written) and reads the result; `before` is
   * how many records the request had copied before this run.
   */
  #fire(op: number, before: number): RunResult {
    const s = this.#shared;
    this.#resumable = false;
    s.setUint32(REQ.op, op, true);
    s.setUint32(REQ.tid, currentThreadId(), true);
    fireTrigger();
    s.setUint32(REQ.op, 0, true);
    const seq = s.getBigUint64(REQ.seq, true);
    if (s.getBigUint64(RES.seq, true) !== seq) {
      throw new Error(
        `The walker program did not run for request ${seq} (is the uprobe attached?)`,
      );
    }
    const result = {
      objects: Number(s.getBigUint64(RES.objects, true)),
      bytes: Number(s.getBigUint64(RES.bytes, true)),
      faults: Number(s.getBigUint64(RES.faults, true)),
      guestNs: Number(s.getBigUint64(RES.walkNs, true)),
      error: Number(s.getBigInt64(RES.error, true)),
      stop: Number(s.getBigUint64(RES.stop, true)),
      pruned: Number(s.getBigUint64(RES.pruned, true)),
      root: s.getBigUint64(RES.root, true),
    };
    this.#resumable = result.stop === STOP_RING_FULL && result.objects > before;
    return result;
  }

  /** Detaches and unloads the programs. Idempotent. */
  close(): void {
    this.#closed = true;
    this.#obj.close();
  }

  /** {@linkcode close}, the kernel's work done on another thread (see `BpfObject.closeAsync`). */
  async closeAsync(): Promise<void> {
    this.#closed = true;
    await this.#obj.closeAsync();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
