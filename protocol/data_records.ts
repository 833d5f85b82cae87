/**
 * The records of a DATA frame: `u64 address | u32 length | bytes`, one after another. The agent
 * builds them with {@linkcode DataFrameBuilder}; the IDS reads them with
 * {@linkcode dataRecords} or {@linkcode forEachRecord}, which check every length.
 *
 * In the answer to a PREFETCH that asked for a delta, a record at address 0 (never a kernel
 * address) is a **carried run**: its 8 bytes are `u32 first | u32 count`, and it stands for the
 * records `first .. first + count - 1` of the base answer (in the order they came), unchanged.
 * The records of an answer, carried ones counted where their run stands, are numbered in order
 * from 0: that is how the next delta refers to them.
 *
 * @module
 */
import { ErrorCode, FRAME_HEADER, FrameError, FrameType, LIMITS } from "./frames.ts";

/** The size of one DATA record's header: u64 address, u32 length. */
export const RECORD_HEADER = 12;

/** The length of a carried run's record (at address 0): u32 first, u32 count. */
export const CARRIED_RUN = 8;

/**
 * Builds DATA frames by appending (address, bytes) records into one buffer, so the agent copies
 * each record once, from the ring buffer straight into the frame.
 */
export class DataFrameBuilder {
  #buf: Uint8Array;
  #view: DataView;
  #at = FRAME_HEADER;
  #records = 0;
  #flushAt: number;
  /**
   * @param capacity the largest frame.
   * @param flushAt frame bytes past which {@linkcode append} asks for a flush: smaller frames
   * let the peer decode one while the next is built.
   */
  constructor(capacity: number = LIMITS.dataFrame, flushAt: number = capacity) {
    this.#buf = new Uint8Array(capacity);
    this.#view = new DataView(this.#buf.buffer);
    this.#flushAt = flushAt;
  }
  get records(): number {
    return this.#records;
  }
  /** Room left for record bytes (after a record header). */
  get room(): number {
    return this.#buf.length - this.#at - RECORD_HEADER;
  }
  /** Appends a record; false when it does not fit or the frame is due (flush, then append again). */
  append(addr: bigint, bytes: Uint8Array): boolean {
    if (!this.#fits(bytes.length)) return false;
    this.#view.setBigUint64(this.#at, addr, true);
    this.#view.setUint32(this.#at + 8, bytes.length, true);
    this.#buf.set(bytes, this.#at + RECORD_HEADER);
    this.#at += RECORD_HEADER + bytes.length;
    this.#records++;
    return true;
  }
  /**
   * As {@linkcode append}, for a record whose address (8 little-endian bytes) is at `addrAt` of
   * `source` and whose `len` bytes are at `bytesAt`: copied from there without a view or a BigInt.
   */
  appendFrom(source: Uint8Array, addrAt: number, bytesAt: number, len: number): boolean {
    if (!this.#fits(len)) return false;
    const buf = this.#buf;
    const at = this.#at;
    for (let i = 0; i < 8; i++) buf[at + i] = source[addrAt + i];
    this.#view.setUint32(at + 8, len, true);
    if (len <= 64) {
      for (let i = 0; i < len; i++) buf[at + RECORD_HEADER + i] = source[bytesAt + i];
    } else {
      buf.set(source.subarray(bytesAt, bytesAt + len), at + RECORD_HEADER);
    }
    this.#at = at + RECORD_HEADER + len;
    this.#records++;
    return true;
  }

  /**
   * Appends a carried run: records `first .. first + count - 1` of the base answer, unchanged.
   * False when the frame is due (flush, then append again).
   */
  appendCarried(first: number, count: number): boolean {
    if (!this.#fits(CARRIED_RUN)) return false;
    const at = this.#at;
    this.#view.setBigUint64(at, 0n, true);
    this.#view.setUint32(at + 8, CARRIED_RUN, true);
    this.#view.setUint32(at + RECORD_HEADER, first, true);
    this.#view.setUint32(at + RECORD_HEADER + 4, count, true);
    this.#at = at + RECORD_HEADER + CARRIED_RUN;
    this.#records++;
    return true;
  }

  /** Whether a record of `len` bytes goes in this frame; throws when it fits in none. */
  #fits(len: number): boolean {
    if (this.#records > 0 && this.#at >= this.#flushAt) return false;
    if (len <= this.room) return true;
    if (this.#records === 0) {
      throw new RangeError(`Cannot frame a record of ${len} bytes: larger than a frame`);
    }
    return false;
  }

  /** Returns the frame (a copy) and empties the builder. */
  take(id: number): Uint8Array {
    this.#view.setUint32(0, this.#at - 4, true);
    this.#view.setUint8(4, FrameType.DATA);
    this.#view.setUint32(5, id, true);
    const out = this.#buf.slice(0, this.#at);
    this.#at = FRAME_HEADER;
    this.#records = 0;
    return out;
  }
}

/** One record of a DATA frame. `bytes` is a view into the frame's payload. */
export interface DataRecord {
  addr: bigint;
  bytes: Uint8Array;
}

/**
 * Calls `onRecord` for each record of a DATA payload, with the address in two 32-bit halves and
 * where its bytes are in `payload` (`len` bytes from `start`): no BigInt and no view per record,
 * for the hot path of a large prefetch.
 * @throws {FrameError} when a record's length runs past the payload.
 */
export function forEachRecord(
  payload: Uint8Array,
  onRecord: (high: number, low: number, payload: Uint8Array, start: number, len: number) => void,
  id = 0,
): void {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  for (let at = 0; at < payload.length;) {
    const start = at + RECORD_HEADER;
    const len = start <= payload.length ? view.getUint32(at + 8, true) : -1;
    if (len < 0 || start + len > payload.length) {
      throw new FrameError(
        `Cannot decode DATA frame: record at ${at} is cut short`,
        ErrorCode.BAD_FRAME,
        id,
      );
    }
    onRecord(view.getUint32(at + 4, true), view.getUint32(at, true), payload, start, len);
    at = start + len;
  }
}

/**
 * The records of a DATA payload, each with its address as a BigInt and a view of its bytes:
 * {@linkcode forEachRecord} for callers off the hot path.
 * @throws {FrameError} when a record's length runs past the payload.
 */
export function dataRecords(payload: Uint8Array, id = 0): DataRecord[] {
  const records: DataRecord[] = [];
  forEachRecord(payload, (high, low, bytes, start, len) => {
    records.push({
      addr: (BigInt(high) << 32n) | BigInt(low),
      bytes: bytes.subarray(start, start + len),
    });
  }, id);
  return records;
}
