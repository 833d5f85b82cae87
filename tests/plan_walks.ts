/**
 * The plan interpreter (ids/kernel/testing/plan_interpreter.ts) held to the real walker: both walk one
 * plan over the same memory and their records are compared one for one.
 *
 * The same memory: the kernel changes while it is walked (tasks fork and exit), so the
 * interpreter does not walk the kernel again; it reads the records the walker copied, the bytes
 * as they were when the walker copied them, and only where the walker read without copying (the
 * links of a selective plan, a guard's field, the NULLs of a sparse array, where it faulted)
 * the kernel's memory, once per range. What it then copies, in which order, and why and where it
 * stops is its own: a divergence from the walker is a record, a count or a stop that differs.
 *
 * @module
 */

import { type RunResult, Walker, type WalkerOptions, type WalkLimits } from "../agent/mod.ts";
import {
  interpretPlan,
  type InterpretResult,
  type PlanMemory,
  type PlanRecord,
} from "../ids/kernel/testing/mod.ts";
import { AddressSpace, type KAddr } from "../ids/memory/mod.ts";
import { decodePlan, encodePlan, type Plan, StopReason } from "../protocol/mod.ts";

/** This machine's kernel: 4-level paging. */
const SPACE = AddressSpace.FOUR_LEVEL;

/** Budgets no plan of the test reaches unless it means to. */
export const UNLIMITED: WalkLimits = { maxObjects: 1 << 30, maxBytes: 2 ** 40 };

/** The defaults of {@linkcode WalkerOptions} that change what a walk copies. */
const STACK_ITEMS = 256;
const DEDUPE_ENTRIES = 1 << 18;

/** What one walk copied: its result and every record, in order. */
export interface Walked {
  run: RunResult;
  records: PlanRecord[];
}

/** How a plan's two walks went, once they agreed. */
export interface Agreement {
  walked: Walked;
  interpreted: InterpretResult;
  /** Reads the interpreter made that the walker's records did not hold. */
  live: number;
  /** Walks it took to agree (1 unless the kernel changed under one). */
  attempts: number;
}

const hex = (v: bigint) => `0x${v.toString(16)}`;

/** The `len` bytes at `addr` read with one READ, or undefined where the kernel cannot read them. */
export function readKernel(walker: Walker, addr: bigint, len: number): Uint8Array | undefined {
  const run = walker.read(addr, len);
  const out = new Uint8Array(len);
  let got = 0;
  walker.drain((at, bytes) => {
    out.set(bytes, Number(at - addr));
    got += bytes.length;
    return true;
  });
  return run.error === 0 && run.stop === StopReason.COMPLETE && got === len ? out : undefined;
}

/**
 * The memory the interpreter reads, as the walk it is compared with saw it: at the point where
 * the walk had copied `copied` records, the bytes of the last record at or before that point
 * that holds them whole (a record's own copy is served by the record), else of the first after
 * it. Where no record holds them whole, the kernel's memory now (each range read once and kept,
 * a read that failed fails again), under every byte a record holds.
 */
export class WalkedMemory implements PlanMemory {
  /** Reads the records could not serve. */
  live = 0;
  #records: readonly PlanRecord[];
  /** Page number -> the records that hold bytes of the page, by index. */
  #pages = new Map<number, number[]>();
  #read = new Map<string, Uint8Array | undefined>();

  constructor(readonly walker: Walker, records: readonly PlanRecord[]) {
    this.#records = records;
    records.forEach((r, i) => {
      const at = SPACE.toKAddr(r.addr)!;
      for (let page = pageOf(at); page <= pageOf(at + r.bytes.length - 1); page++) {
        let list = this.#pages.get(page);
        if (!list) this.#pages.set(page, list = []);
        list.push(i);
      }
    });
  }

  read(addr: bigint, len: number, copied: number): Uint8Array | undefined {
    const at = SPACE.toKAddr(addr);
    if (at === undefined || addr + BigInt(len) > 1n << 64n) return undefined;
    const list = this.#pages.get(pageOf(at)) ?? [];
    const held = this.#nearest(list, copied, (r) => r.addr <= addr && addr + BigInt(len) <= end(r));
    if (held) return held.bytes.subarray(Number(addr - held.addr), Number(addr - held.addr) + len);
    // Bytes of several records, the one nearest `copied` last, so that its bytes are the ones
    // left; the kernel's memory now only where none holds a byte, or to tell a fault.
    const out = new Uint8Array(len);
    const covered = new Uint8Array(len);
    const pages = new Set<number>();
    for (let page = pageOf(at); page <= pageOf(at + len - 1); page++) pages.add(page);
    const over = [...new Set([...pages].flatMap((p) => this.#pages.get(p) ?? []))]
      .sort((a, b) => Math.abs(b - copied) - Math.abs(a - copied));
    for (const i of over) {
      const r = this.#records[i];
      const from = r.addr > addr ? r.addr : addr;
      const to = end(r) < addr + BigInt(len) ? end(r) : addr + BigInt(len);
      if (from >= to) continue;
      out.set(r.bytes.subarray(Number(from - r.addr), Number(to - r.addr)), Number(from - addr));
      covered.fill(1, Number(from - addr), Number(to - addr));
    }
    if (covered.every((c) => c === 1)) return out;
    const key = `${addr}:${len}`;
    if (!this.#read.has(key)) {
      this.live++;
      this.#read.set(key, readKernel(this.walker, addr, len));
    }
    const now = this.#read.get(key);
    if (!now) return undefined;
    covered.forEach((c, i) => {
      if (!c) out[i] = now[i];
    });
    return out;
  }

  /** The record of `list` (indices, ascending) nearest `copied` that `fits`, earlier first. */
  #nearest(list: number[], copied: number, fits: (r: PlanRecord) => boolean) {
    let lo = 0;
    for (let hi = list.length; lo < hi;) {
      const mid = (lo + hi) >> 1;
      if (list[mid] <= copied) lo = mid + 1;
      else hi = mid;
    }
    for (let k = lo - 1; k >= 0; k--) {
      if (fits(this.#records[list[k]])) return this.#records[list[k]];
    }
    for (let k = lo; k < list.length; k++) {
      if (fits(this.#records[list[k]])) return this.#records[list[k]];
    }
    return undefined;
  }
}

const end = (r: PlanRecord) => r.addr + BigInt(r.bytes.length);
const pageOf = (at: KAddr) => Math.floor(at / 4096);

/** How the walker's walk and the interpreter's differ: nothing when they agree. */
export function differences(walked: Walked, interpreted: InterpretResult): string[] {
  const out: string[] = [];
  const counts = (r: Omit<RunResult, "guestNs" | "root" | "error"> | InterpretResult) =>
    `stop ${r.stop}, ${r.objects} records, ${r.bytes} bytes, ${r.faults} faults, ${r.pruned} pruned`;
  if (counts(walked.run) !== counts(interpreted)) {
    out.push(`the walker: ${counts(walked.run)}; the interpreter: ${counts(interpreted)}`);
  }
  const a = walked.records;
  const b = interpreted.records;
  const show = (r: PlanRecord | undefined) => r ? `${hex(r.addr)} (${r.bytes.length} bytes)` : "-";
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const same = a[i] && b[i] && a[i].addr === b[i].addr &&
      a[i].bytes.length === b[i].bytes.length && a[i].bytes.every((v, k) => v === b[i].bytes[k]);
    if (same) continue;
    const bytes = a[i] && b[i] && a[i].addr === b[i].addr &&
      a[i].bytes.length === b[i].bytes.length;
    out.push(
      `record ${i} of ${a.length} and ${b.length}: the walker ${show(a[i])}, the interpreter ${
        show(b[i])
      }${bytes ? ", the bytes differ" : ""}`,
    );
    break;
  }
  return out;
}

/**
 * The real walker, opened with the sizes the interpreter is told. Close it (`using`) to unload.
 */
export class WalkerPair implements Disposable {
  private constructor(
    readonly walker: Walker,
    readonly stackItems: number,
    readonly dedupeEntries: number,
  ) {}

  static async open(options: WalkerOptions = {}): Promise<WalkerPair> {
    return new WalkerPair(
      await Walker.open({ ringBytes: 16 << 20, ...options }),
      options.stackItems ?? STACK_ITEMS,
      options.dedupeEntries ?? DEDUPE_ENTRIES,
    );
  }

  /** One walk of the encoded `plan`, drained and resumed for as long as a full ring stops it. */
  walk(plan: Uint8Array, limits: WalkLimits = UNLIMITED): Walked {
    let run = this.walker.walkPlan(plan, limits);
    const records: PlanRecord[] = [];
    for (;;) {
      this.walker.drain((addr, bytes) => records.push({ addr, bytes: bytes.slice() }) > 0);
      const next = run.stop === StopReason.RING_FULL ? this.walker.resume() : undefined;
      if (!next) break;
      run = next;
    }
    return { run, records };
  }

  /**
   * Walks `plan` with the walker, then with the interpreter over what the walker copied, until
   * the two agree, at most `attempts` times: what changed in the kernel between the walk and a
   * read the interpreter had to make of it now (a busy fd table's NULL slots) can make one walk
   * differ; a divergence of the interpreter makes every walk differ.
   * @throws {Error} naming the first difference of each attempt, when none agreed.
   */
  agree(plan: Plan, limits: WalkLimits = UNLIMITED, attempts = 10): Agreement {
    const bytes = encodePlan(plan);
    const decoded = decodePlan(bytes);
    const seen: string[] = [];
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const walked = this.walk(bytes, limits);
      const memory = new WalkedMemory(this.walker, walked.records);
      const interpreted = interpretPlan(decoded, memory, {
        ...limits,
        stackItems: this.stackItems,
        dedupeEntries: this.dedupeEntries,
      });
      const diff = differences(walked, interpreted);
      if (diff.length === 0) return { walked, interpreted, live: memory.live, attempts: attempt };
      seen.push(`attempt ${attempt}: ${diff.join("; ")}`);
    }
    throw new Error(`The interpreter and the walker differ:\n${seen.join("\n")}`);
  }

  [Symbol.dispose](): void {
    this.walker.close();
  }
}
