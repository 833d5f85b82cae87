/**
 * Reading frames off the wire: {@linkcode FrameDecoder} splits a byte stream into raw frames
 * (their payloads are parsed by `frame_parser.ts`).
 *
 * Everything read from the wire is hostile: {@linkcode FrameDecoder} refuses a length above its
 * limit before buffering it.
 *
 * @module
 */
import { ErrorCode, FRAME_HEADER, FrameError, LIMITS, type RawFrame } from "./frames.ts";

/** Options of {@linkcode FrameDecoder}. */
export interface FrameDecoderOptions {
  /** Largest frame (type, id, payload) accepted. @default LIMITS.maxFrame */
  maxFrame?: number;
  /**
   * Larger limits for some frame types (e.g. LOAD's object): a frame over `maxFrame` is then
   * judged once its type byte has arrived, against its type's limit here (or `maxFrame`).
   */
  maxFrameOf?: ReadonlyMap<number, number>;
}

/**
 * Splits a byte stream into raw frames. Feed it chunks with {@linkcode push}, then take frames
 * with {@linkcode next} until it returns undefined. A frame larger than `maxFrame` (or its type's
 * limit in `maxFrameOf`) throws a fatal {@linkcode FrameError} as soon as its length (and, for a
 * type with a limit of its own, its type) is read, before any of it is buffered.
 *
 * A frame inside one chunk is returned as a view of it; a frame spread over chunks is copied
 * once, into a buffer of its size allocated when its length is known.
 */
export class FrameDecoder {
  #queue: Uint8Array[] = [];
  /** Index in #queue of the first chunk not wholly consumed, and how much of it is. */
  #head = 0;
  #offset = 0;
  #queued = 0;
  /** The frame being assembled (without its length field), and how much of it is filled. */
  #frame: Uint8Array | undefined;
  #filled = 0;
  #maxFrame: number;
  #maxFrameOf: ReadonlyMap<number, number> | undefined;
  constructor(options: FrameDecoderOptions = {}) {
    this.#maxFrame = options.maxFrame ?? LIMITS.maxFrame;
    this.#maxFrameOf = options.maxFrameOf?.size ? options.maxFrameOf : undefined;
  }

  /** Bytes received but not yet returned as frames. */
  get buffered(): number {
    return this.#queued + this.#filled;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#queue.push(chunk);
    this.#queued += chunk.length;
  }

  next(): RawFrame | undefined {
    if (!this.#frame) {
      if (this.#queued < 4) return undefined;
      let max = this.#maxFrame;
      if (this.#maxFrameOf && this.#peek(0, 4) > max) {
        // Whether this type may be larger is known once its type byte is here.
        if (this.#queued < 5) return undefined;
        const type = this.#peek(4, 1);
        max = this.#maxFrameOf.get(type) ?? max;
      }
      const length = this.#readU32();
      if (length < FRAME_HEADER - 4 || length > max) {
        throw new FrameError(
          `Cannot accept frame: length ${length} is outside 5..${max}`,
          ErrorCode.TOO_LARGE,
          0,
          true,
        );
      }
      const chunk = this.#queue[this.#head];
      if (chunk && chunk.length - this.#offset >= length) {
        const bytes = chunk.subarray(this.#offset, this.#offset + length);
        this.#advance(length);
        return raw(bytes);
      }
      this.#frame = new Uint8Array(length);
      this.#filled = 0;
    }
    const frame = this.#frame;
    while (this.#filled < frame.length && this.#queued > 0) {
      const chunk = this.#queue[this.#head];
      const n = Math.min(chunk.length - this.#offset, frame.length - this.#filled);
      frame.set(chunk.subarray(this.#offset, this.#offset + n), this.#filled);
      this.#filled += n;
      this.#advance(n);
    }
    if (this.#filled < frame.length) return undefined;
    this.#frame = undefined;
    this.#filled = 0;
    return raw(frame);
  }

  /** Reads `n` (at most 4) queued bytes from `skip` on as a little-endian number, consuming none. */
  #peek(skip: number, n: number): number {
    let value = 0;
    let chunk = this.#head;
    let at = this.#offset + skip;
    while (at >= this.#queue[chunk].length) at -= this.#queue[chunk++].length;
    for (let i = 0; i < n; i++) {
      value += this.#queue[chunk][at] * 2 ** (8 * i);
      if (++at === this.#queue[chunk].length) {
        chunk++;
        at = 0;
      }
    }
    return value;
  }

  /** Consumes four bytes (the caller checked they are there) as a little-endian u32. */
  #readU32(): number {
    let value = 0;
    for (let i = 0; i < 4; i++) {
      value += this.#queue[this.#head][this.#offset] * 2 ** (8 * i);
      this.#advance(1);
    }
    return value;
  }

  #advance(n: number): void {
    this.#offset += n;
    this.#queued -= n;
    if (this.#offset === this.#queue[this.#head].length) {
      this.#head++;
      this.#offset = 0;
      if (this.#head === this.#queue.length || this.#head > 64) {
        this.#queue = this.#queue.slice(this.#head);
        this.#head = 0;
      }
    }
  }
}

function raw(bytes: Uint8Array): RawFrame {
  const view = new DataView(bytes.buffer, bytes.byteOffset, 5);
  return { type: view.getUint8(0), id: view.getUint32(1, true), payload: bytes.subarray(5) };
}
