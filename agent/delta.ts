/**
 * Delta answers: what the agent remembers of the last answer it sent one connection, so that the
 * next answer sends only the records that changed.
 *
 * A remembered answer is each record's address, length and a 64-bit digest of its bytes, in the
 * order they were sent, and nothing else: no bytes are kept (a 10,000-process walk is tens of
 * megabytes; its digests, 20 bytes a record). A record of a new walk whose address, length and
 * digest equal those of a record of the remembered answer is sent as a reference to it (a carried
 * run, protocol/data_records.ts); consecutive references become one run, so an answer where
 * nothing changed is a few runs. The digests are computed here, in the agent's process, as the
 * records are framed (1-2 GB/s), not in the eBPF walker: a loop over every byte of a record would
 * have to be proven by the verifier for each of its call sites.
 *
 * The digest is not keyed: a guest that can write kernel memory at will could craft a change that
 * keeps a digest, as it could make the agent lie outright (DESIGN.md's threat model). The IDS asks
 * for a whole answer every few refreshes, which bounds how long any such change stays unseen.
 *
 * @module
 */

import type { DataFrameBuilder } from "../protocol/mod.ts";

/** Bytes before a ring record's data: u64 address, u32 length, u32 padding (bpf/walk.h). */
const RING_HEADER = 16;

/** Most records a remembered answer holds (the protocol's most records of one PREFETCH). */
export const MAX_REMEMBERED = 1 << 20;

/**
 * The digest of `len` bytes at `at` of `bytes` (`words` is the same memory as 32-bit words; `at`
 * is a multiple of 4): two 32-bit lanes, in `out`.
 */
export function digest(
  bytes: Uint8Array,
  words: Int32Array,
  at: number,
  len: number,
  out: Int32Array,
): void {
  let h1 = 0x2545f491 ^ len;
  let h2 = 0x6a09e667 ^ len;
  const first = at >> 2;
  const end = first + (len >> 2);
  for (let i = first; i < end; i++) {
    const w = words[i];
    let k = Math.imul(w, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    h1 ^= Math.imul(k, 0x1b873593);
    h1 = (h1 << 13) | (h1 >>> 19);
    h1 = (Math.imul(h1, 5) + 0xe6546b64) | 0;
    h2 = Math.imul(h2 ^ w, 0x85ebca6b);
    h2 ^= h2 >>> 13;
  }
  for (let i = at + (len & ~3); i < at + len; i++) {
    h1 = Math.imul(h1 ^ bytes[i], 0x9e3779b1);
    h2 = Math.imul(h2 + bytes[i], 0xc2b2ae35);
  }
  h1 ^= h1 >>> 16;
  h1 = Math.imul(h1, 0x85ebca6b);
  h1 ^= h1 >>> 13;
  h2 ^= h2 >>> 16;
  h2 = Math.imul(h2, 0xc2b2ae35);
  h2 ^= h2 >>> 15;
  out[0] = h1;
  out[1] = h2;
}

/** The records of one answer as the agent remembers them: address, length, digest, in order. */
export class RememberedAnswer {
  /** Low and high halves of each record's address, its length and its digest's two lanes. */
  readonly #fields: Int32Array;
  /** Open addressing by address: each slot holds a record's index + 1, or 0. */
  readonly #slots: Int32Array;
  readonly #mask: number;

  /** @param fields five 32-bit words a record: address low, high, length, digest lanes. */
  constructor(readonly generation: number, fields: Int32Array, readonly count: number) {
    this.#fields = fields;
    let size = 16;
    while (size < count * 2) size *= 2;
    this.#slots = new Int32Array(size);
    this.#mask = size - 1;
    for (let i = 0; i < count; i++) {
      let s = slotOf(fields[i * 5], fields[i * 5 + 1]) & this.#mask;
      while (this.#slots[s] !== 0) s = (s + 1) & this.#mask;
      this.#slots[s] = i + 1;
    }
  }

  /** The index of a record with this address, length and digest, or -1. */
  find(low: number, high: number, len: number, h1: number, h2: number): number {
    const f = this.#fields;
    for (let s = slotOf(low, high) & this.#mask;; s = (s + 1) & this.#mask) {
      const i = this.#slots[s] - 1;
      if (i < 0) return -1;
      const at = i * 5;
      if (
        f[at] === low && f[at + 1] === high && f[at + 2] === len && f[at + 3] === h1 &&
        f[at + 4] === h2
      ) return i;
    }
  }
}

function slotOf(low: number, high: number): number {
  return Math.imul(low ^ Math.imul(high, 0x27d4eb2f), 0x9e3779b1) >>> 12;
}

/**
 * Frames the records of one walk for a delta answer: each record whose address, length and
 * digest the base holds goes as part of a carried run, every other one whole; and remembers the
 * new answer as it goes. Without a base, every record goes whole (and is remembered).
 */
export class DeltaEncoder {
  readonly #base: RememberedAnswer | undefined;
  readonly #generation: number;
  #fields = new Int32Array(5 * 1024);
  #count = 0;
  #runFirst = 0;
  #runCount = 0;
  #words?: Int32Array;
  readonly #digest = new Int32Array(2);
  /** Records sent as references to the base. */
  carried = 0;

  constructor(base: RememberedAnswer | undefined, generation: number) {
    this.#base = base;
    this.#generation = generation;
  }

  /**
   * Frames the ring record whose header is at `at` of `ring` (its `len` bytes follow the header):
   * false when the frame is due (flush it, then offer the same record again).
   */
  append(builder: DataFrameBuilder, ring: Uint8Array, at: number, len: number): boolean {
    const words = this.#wordsOf(ring);
    const low = words[at >> 2];
    const high = words[(at >> 2) + 1];
    const d = this.#digest;
    digest(ring, words, at + RING_HEADER, len, d);
    const p = this.#base ? this.#base.find(low, high, len, d[0], d[1]) : -1;
    if (p >= 0 && this.#runCount > 0 && p === this.#runFirst + this.#runCount) {
      this.#runCount++;
    } else {
      if (!this.flush(builder)) return false;
      if (p >= 0) {
        this.#runFirst = p;
        this.#runCount = 1;
      } else if (!builder.appendFrom(ring, at, at + RING_HEADER, len)) {
        return false;
      }
    }
    if (p >= 0) this.carried++;
    this.#remember(low, high, len, d[0], d[1]);
    return true;
  }

  /** Frames the carried run in progress, if any: false when the frame is due. */
  flush(builder: DataFrameBuilder): boolean {
    if (this.#runCount === 0) return true;
    if (!builder.appendCarried(this.#runFirst, this.#runCount)) return false;
    this.#runCount = 0;
    return true;
  }

  /** The answer as framed so far, to remember under this encoder's generation. */
  answer(): RememberedAnswer {
    return new RememberedAnswer(this.#generation, this.#fields, this.#count);
  }

  /** Whether every record went into the answer (none past {@linkcode MAX_REMEMBERED}). */
  get complete(): boolean {
    return this.#count < MAX_REMEMBERED;
  }

  #remember(low: number, high: number, len: number, h1: number, h2: number): void {
    if (this.#count >= MAX_REMEMBERED) return;
    let f = this.#fields;
    if ((this.#count + 1) * 5 > f.length) {
      f = new Int32Array(f.length * 2);
      f.set(this.#fields);
      this.#fields = f;
    }
    const at = this.#count++ * 5;
    f[at] = low;
    f[at + 1] = high;
    f[at + 2] = len;
    f[at + 3] = h1;
    f[at + 4] = h2;
  }

  #wordsOf(ring: Uint8Array): Int32Array {
    if (this.#words?.buffer !== ring.buffer || this.#words.byteOffset !== ring.byteOffset) {
      this.#words = new Int32Array(ring.buffer, ring.byteOffset, ring.byteLength >> 2);
    }
    return this.#words;
  }
}
