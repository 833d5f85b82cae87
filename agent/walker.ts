/**
 * The user side of `bpf/walk.bpf.c`: loads the object, attaches its programs to the trigger,
 * writes requests into the shared `.bss`, fires the trigger and hands out the records the
 * programs left in the ring buffer. The layouts mirror `bpf/walk.h`.
 *
 * The walker copies bytes; it never interprets them.
 *
 * @module
 */

import { type DataFrameBuilder, PLAN_SIZE } from "../protocol/mod.ts";
import { checkObject } from "./bpf_check.ts";
import { ObjectRefused } from "./object_refused.ts";
import { kernelHalf } from "./_kernel_facts.ts";
import type { DeltaEncoder } from "./delta.ts";
import {
  BpfObject,
  currentThreadId,
  fireTrigger,
  type LoadedProgramEntry,
  TRIGGER,
} from "./libbpf.ts";

const OP_READ = 1;
const OP_WALK_TASKS = 2;
const OP_ANCHOR = 3;
const OP_PLAN = 4;
const OP_RESUME = 5;
/** StopReason.RING_FULL: the one stop a walk resumes from. */
const STOP_RING_FULL = 3;

/**
 * Mirrors `struct ebpfmon_shared` in bpf/walk.h: request at 0 (48 bytes), result at 48
 * (72 bytes), plan at 120.
 */
const REQ = { seq: 0, op: 8, tid: 12, addr: 16, len: 24, maxObjects: 32, maxBytes: 40 } as const;
const RES = {
  seq: 48,
  objects: 56,
  bytes: 64,
  walkNs: 72,
  root: 80,
  faults: 88,
  error: 96,
  stop: 104,
  pruned: 112,
} as const;
const PLAN_AT = 120;
/** Mirrors `struct ebpfmon_config` in bpf/walk.h, the object's `.rodata`. */
const CONFIG = { agentTgid: 0, seenMask: 4, kernelMin: 8 } as const;
const CONFIG_SIZE = 16;
const SHARED_SIZE = PLAN_AT + PLAN_SIZE;
/**
 * Mirrors `struct ebpfmon_record`, a record in the ring: u64 address, u32 length, u32 padding,
 * then the bytes (the wire's DATA records have no padding: protocol/data_records.ts).
 */
const RING_RECORD_HEADER = 16;
/**
 * Mirrors EBPFMON_READ_CHUNK and EBPFMON_READ_MAX_CHUNKS: the longest read one run of the BPF
 * program can do. The agent serves READs of at most `LIMITS.maxRead` (protocol/frames.ts), less.
 */
export const WALKER_READ_MAX = 1024 * 4096;

/** The programs a walker object must have (it may have more: every one is attached). */
export const WALKER_PROGRAMS = ["read_memory", "walk_tasks", "report_anchor", "walk_plan"] as const;

/** The kernel's program type of uprobes (BPF_PROG_TYPE_KPROBE). */
const PROG_TYPE_KPROBE = 2;

/** Programs as HELLO and the agent's log name them: `name:tag` words, or "none". */
export function describePrograms(programs: readonly { name: string; tag: string }[]): string {
  return programs.length ? programs.map((p) => `${p.name}:${p.tag}`).join(" ") : "none";
}

/**
 * The default of {@linkcode WalkerOptions.ringBytes}: a READ as long as the protocol allows
 * (`LIMITS.maxRead`, 256 records of a page and their headers) fits whole, and a walk that needs
 * more is resumed ({@linkcode Walker.resume}). The ring's pages are guest kernel memory, which
 * the agent maps twice (a record that wraps around the end reads as one): its RSS counts them
 * twice.
 */
export const DEFAULT_RING_BYTES = 2 << 20;

/** Where the compiled object is, for `deno run` and inside a `deno compile` binary alike. */
export const WALK_OBJECT = new URL("../bpf/out/walk.bpf.o", import.meta.url);

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

/** Options of {@linkcode Walker.open}. */
export interface WalkerOptions {
  /**
   * Size of the ring buffer in bytes; a power of two, multiple of the page size. A walk that
   * copies more than it holds is resumed once it is drained ({@linkcode Walker.resume}), so the
   * ring bounds how much of an answer is held at once, not how large it may be.
   * @default {@linkcode DEFAULT_RING_BYTES} (2 MiB)
   */
  ringBytes?: number;
  /**
   * Items the plan walker's work stack holds (24 bytes each). A plan needs at most 3 per level of
   * depth plus 3 (195 at the deepest); fewer stop deep walks with STACK_FULL. @default 256
   */
  stackItems?: number;
  /**
   * Slots of the table in which the plan walker remembers, per walk, the objects of nodes that
   * dedupe: a power of two, direct-mapped, 24 bytes a slot, allocated at load (6 MiB by
   * default). Objects whose slots collide may be copied twice.
   * @default 262144
   */
  dedupeEntries?: number;
  /**
   * The compiled object; read from {@linkcode WALK_OBJECT} when absent. It is checked first
   * (`agent/bpf_check.ts`): program types and helpers.
   */
  object?: Uint8Array;
  /**
   * The first address of the kernel half: the plan walker reads and follows nothing below it.
   * @default this kernel's, for its paging mode (`KERNEL_HALF`, or `KERNEL_HALF_LA57` with
   * 5-level paging)
   */
  kernelHalf?: bigint;
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
   * program of the object is attached to the trigger (uprobe or uretprobe, as its section says).
   * @throws {ObjectRefused} when the check refuses the object, or it is not a walker.
   * @throws {LibbpfError} when the kernel refuses (no BPF permission, verifier, no uprobes).
   */
  static async open(options: WalkerOptions = {}): Promise<Walker> {
    const elf = options.object ?? await Deno.readFile(WALK_OBJECT);
    const checked = checkObject(elf);
    using stack = new DisposableStack();
    const obj = stack.use(BpfObject.open(elf, "walk"));
    // libbpf's own reading of the object must agree with the check's: the programs it will load
    // are uprobes, each in a section the check read.
    const kinds = new Map(checked.sections.map((s) => [s.section, s.kind]));
    const programs = obj.programs();
    for (const p of programs) {
      if (p.type !== PROG_TYPE_KPROBE || !kinds.has(p.section)) {
        throw new ObjectRefused(
          `Cannot load the object: libbpf reads program "${p.name}" in section "${p.section}" as a ${p.typeName} program the check did not pass`,
        );
      }
    }
    for (const name of WALKER_PROGRAMS) {
      if (!programs.some((p) => p.name === name)) {
        throw new ObjectRefused(
          `Cannot use the object as a walker: it has no program "${name}" (a walker has ${
            WALKER_PROGRAMS.join(", ")
          })`,
        );
      }
    }
    const config = new Uint8Array(CONFIG_SIZE);
    const seenSlots = positive(options.dedupeEntries ?? 1 << 18, "dedupeEntries");
    if ((seenSlots & (seenSlots - 1)) !== 0) {
      throw new RangeError(`dedupeEntries must be a power of two, not ${seenSlots}`);
    }
    const settings = new DataView(config.buffer);
    settings.setUint32(CONFIG.agentTgid, Deno.pid, true);
    settings.setUint32(CONFIG.seenMask, seenSlots - 1, true);
    settings.setBigUint64(CONFIG.kernelMin, options.kernelHalf ?? await kernelHalf(), true);
    obj.setGlobals(".rodata", config);
    obj.setMaxEntries("records", options.ringBytes ?? DEFAULT_RING_BYTES);
    obj.setMaxEntries("plan_stack", positive(options.stackItems ?? 256, "stackItems"));
    obj.setMaxEntries("plan_seen", seenSlots);
    obj.load();
    for (const p of programs) {
      const retprobe = kinds.get(p.section) === "uretprobe";
      obj.attachUprobe(p.name, { pid: Deno.pid, ...TRIGGER, retprobe });
    }
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

function positive(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1 || value > 0xffff_ffff) {
    throw new RangeError(`Cannot size the walker: ${name} ${value} is not a positive u32`);
  }
  return value;
}
