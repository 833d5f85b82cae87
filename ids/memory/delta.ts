/**
 * The IDS's half of delta answers (protocol/data_records.ts): the records of the last answer of a
 * connection, in the order they came, so that a carried run of the next answer (records `first ..
 * first + count - 1` of it, unchanged) can be put back into the new snapshot's cache.
 *
 * A run's bytes are copied out of the base into chunks of the new answer: the new answer then
 * holds its own bytes and those of the frames it received, and the base, with every frame it kept
 * alive, is dropped once the new answer replaces it. So the IDS holds at most two answers of a
 * connection at a time, however long a record stays unchanged.
 *
 * @module
 */

import type { KAddr } from "./address.ts";
import type { MemoryCache } from "./cache.ts";

/** Bytes of each chunk carried records are copied into. */
const CHUNK = 1 << 20;

/** A carried run that does not fit the base it refers to. */
export class CarriedRunError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CarriedRunError";
  }
}

/** The records of one answer: where each one's bytes are, in order. */
export class AnswerRecords {
  constructor(
    /** The generation the agent remembers this answer under. */
    readonly generation: number,
    readonly count: number,
    /** Bytes of all records. */
    readonly bytes: number,
    readonly addrs: Float64Array,
    readonly lens: Uint32Array,
    readonly offsets: Uint32Array,
    /** Index into `buffers` of each record's bytes. */
    readonly holders: Uint32Array,
    readonly buffers: readonly Uint8Array[],
  ) {}
}

/**
 * The records of an answer as they arrive, whole or carried from a base, to keep as the next
 * answer's base.
 */
export class AnswerBuilder {
  #count = 0;
  #bytes = 0;
  #addrs = new Float64Array(1024);
  #lens = new Uint32Array(1024);
  #offsets = new Uint32Array(1024);
  #holders = new Uint32Array(1024);
  #buffers: Uint8Array[] = [];
  #last?: Uint8Array;
  #chunk?: Uint8Array;
  #used = 0;
  /** Records and bytes carried from the base. */
  carried = 0;
  carriedBytes = 0;

  /** A record that came whole: `len` bytes of `payload` from `start`, kept by reference. */
  add(addr: KAddr, payload: Uint8Array, start: number, len: number): void {
    if (this.#last !== payload) {
      this.#buffers.push(payload);
      this.#last = payload;
    }
    this.#push(addr, len, start, this.#buffers.length - 1);
  }

  /**
   * The records `first .. first + count - 1` of `base`: copied into this answer's own chunks and
   * inserted into `cache` (as part of `batch`). Returns their bytes.
   * @throws {CarriedRunError} when the run is empty or passes the end of the base.
   */
  carry(
    base: AnswerRecords,
    first: number,
    count: number,
    cache: MemoryCache,
    batch: number,
  ): number {
    if (count < 1 || first + count > base.count) {
      throw new CarriedRunError(
        `a carried run of records ${first}..${
          first + count - 1
        } is not within the ${base.count} records of the base`,
      );
    }
    let bytes = 0;
    for (let i = first; i < first + count; i++) {
      const len = base.lens[i];
      const chunk = this.#room(len);
      const from = base.buffers[base.holders[i]];
      const off = base.offsets[i];
      const at = this.#used;
      if (len <= 64) { for (let k = 0; k < len; k++) chunk[at + k] = from[off + k]; }
      else chunk.set(from.subarray(off, off + len), at);
      this.#used += len;
      if (!cache.insertFrom(base.addrs[i], chunk, at, len, batch)) {
        throw new CarriedRunError("the memory cache refused a carried record");
      }
      this.#push(base.addrs[i], len, at, this.#buffers.length - 1);
      bytes += len;
    }
    this.carried += count;
    this.carriedBytes += bytes;
    return bytes;
  }

  /** The answer, under the generation the agent gave it. */
  finish(generation: number): AnswerRecords {
    const n = this.#count;
    return new AnswerRecords(
      generation,
      n,
      this.#bytes,
      this.#addrs.subarray(0, n),
      this.#lens.subarray(0, n),
      this.#offsets.subarray(0, n),
      this.#holders.subarray(0, n),
      this.#buffers,
    );
  }

  /** A chunk with room for `len` more bytes, made current (a new one when the last is full). */
  #room(len: number): Uint8Array {
    if (!this.#chunk || this.#used + len > this.#chunk.length) {
      this.#chunk = new Uint8Array(Math.max(CHUNK, len));
      this.#used = 0;
    }
    if (this.#last !== this.#chunk) {
      this.#buffers.push(this.#chunk);
      this.#last = this.#chunk;
    }
    return this.#chunk;
  }

  #push(addr: KAddr, len: number, offset: number, holder: number): void {
    if (this.#count === this.#addrs.length) {
      const grow = <T extends Float64Array | Uint32Array>(a: T, make: (n: number) => T): T => {
        const b = make(a.length * 2);
        b.set(a);
        return b;
      };
      this.#addrs = grow(this.#addrs, (n) => new Float64Array(n));
      this.#lens = grow(this.#lens, (n) => new Uint32Array(n));
      this.#offsets = grow(this.#offsets, (n) => new Uint32Array(n));
      this.#holders = grow(this.#holders, (n) => new Uint32Array(n));
    }
    const i = this.#count++;
    this.#addrs[i] = addr;
    this.#lens[i] = len;
    this.#offsets[i] = offset;
    this.#holders[i] = holder;
    this.#bytes += len;
  }
}
