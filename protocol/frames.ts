/**
 * Binary frames between the IDS and the agent.
 *
 * Every frame is `u32 length | u8 type | u32 request id | payload`, little-endian, where `length`
 * counts the bytes after itself. A request from the IDS (GET_BTF, SYMBOLS, READ, PREFETCH) is
 * answered by zero or more DATA or BTF frames with the same request id, then exactly one END or
 * ERROR. Request ids are chosen by the IDS; the agent answers requests in order.
 *
 * Everything read from the wire is hostile: {@linkcode FrameDecoder} refuses a length above its
 * limit before buffering it, and every payload parser checks every length against the bytes it
 * has. A bad payload throws {@linkcode FrameError}, which names the frame and the problem.
 *
 * @module
 */

/** The protocol version this build speaks. */
export const PROTOCOL_VERSION = 2;

/** Hard limits every peer enforces. */
export const LIMITS = {
  /** Largest frame (type, id and payload) accepted from the wire. */
  maxFrame: 16 << 20,
  /** Largest DATA or BTF frame the agent builds. */
  dataFrame: 1 << 20,
  /**
   * Largest frame the IDS accepts from an agent: a DATA or BTF frame of `dataFrame` bytes and
   * its chunk header, with room to spare (every other answer is smaller).
   */
  maxAnswerFrame: (1 << 20) + 4096,
  /**
   * Largest kernel BTF a HELLO may announce (a real vmlinux BTF is 5-7 MB): the IDS allocates
   * the BTF once its size is known, so the size is checked first.
   */
  maxBtf: 64 << 20,
  /** Largest READ length. */
  maxRead: 1 << 20,
  /** Most records one PREFETCH may return. */
  maxRecords: 1 << 20,
  /** Most payload bytes one PREFETCH may return. */
  maxPrefetchBytes: 256 << 20,
  /** Longest string field. */
  maxString: 4096,
  /** Most names one SYMBOLS request may ask for. */
  maxSymbols: 64,
} as const;

export const FrameType = {
  HELLO: 0x01,
  GET_BTF: 0x02,
  READ: 0x03,
  PREFETCH: 0x04,
  SYMBOLS: 0x05,
  DATA: 0x10,
  BTF: 0x11,
  END: 0x12,
  ERROR: 0x13,
} as const;
export type FrameType = typeof FrameType[keyof typeof FrameType];

const TYPE_NAMES = new Map<number, string>(
  Object.entries(FrameType).map(([name, code]) => [code, name]),
);

/** Codes carried by ERROR frames. */
export const ErrorCode = {
  BAD_FRAME: 1,
  UNKNOWN_TYPE: 2,
  TOO_LARGE: 3,
  BAD_VERSION: 4,
  FAULT: 5,
  UNSUPPORTED: 6,
  INTERNAL: 7,
  NOT_READY: 8,
} as const;
export type ErrorCode = typeof ErrorCode[keyof typeof ErrorCode];

/** What a PREFETCH walks: the built-in task walk, or the plan it carries. */
export const PrefetchTarget = {
  TASKS: 1,
  PLAN: 2,
} as const;
export type PrefetchTarget = typeof PrefetchTarget[keyof typeof PrefetchTarget];

/** Why a walk stopped. Anything but COMPLETE means the answer is truncated. */
export const StopReason = {
  COMPLETE: 0,
  MAX_OBJECTS: 1,
  MAX_BYTES: 2,
  RING_FULL: 3,
  FAULT: 4,
  NO_ROOT: 5,
  /** The walker's work stack filled up. */
  STACK_FULL: 6,
  /** The walker used every step bpf_loop allows. */
  STEPS: 7,
} as const;
export type StopReason = typeof StopReason[keyof typeof StopReason];

/** What the agent tells the IDS about itself and its guest in its HELLO. */
export interface AgentInfo {
  kernelRelease: string;
  /** SHA-256 of the guest's /sys/kernel/btf/vmlinux. */
  btfHash: Uint8Array;
  btfSize: number;
  bootId: string;
  /** Address of a task_struct in the guest (the agent's own): where walks begin. */
  anchor: bigint;
  agentPid: number;
  /** The in-guest program variant serving requests. */
  programs: string;
  /** What the guest kernel offers: "modules" when it has loadable modules (/proc/modules). */
  features: string[];
}

/** Statistics closing a READ or PREFETCH. */
export interface EndStats {
  objects: number;
  bytes: number;
  /** Objects that could not be read and were skipped. */
  faults: number;
  /** Edges not followed because they lead deeper than the plan allows. */
  pruned: number;
  /** Nanoseconds spent in the guest kernel's programs. */
  guestNs: number;
  /** Nanoseconds from request to END in the agent. */
  agentNs: number;
  stop: StopReason;
  /** Address where the walk began (init_task for the task walk), 0 when none. */
  root: bigint;
}

export type Frame =
  | { type: typeof FrameType.HELLO; id: number; version: number; agent?: AgentInfo }
  | { type: typeof FrameType.GET_BTF; id: number }
  | { type: typeof FrameType.READ; id: number; addr: bigint; len: number }
  | {
    type: typeof FrameType.PREFETCH;
    id: number;
    target: PrefetchTarget;
    maxObjects: number;
    maxBytes: number;
    /** PLAN: the encoded plan (protocol/plan.ts); empty for TASKS. */
    plan: Uint8Array;
  }
  | { type: typeof FrameType.SYMBOLS; id: number; names: string[] }
  | { type: typeof FrameType.SYMBOLS; id: number; symbols: [string, bigint][] }
  /** The reverse question: which symbol starts at each of these addresses. */
  | { type: typeof FrameType.SYMBOLS; id: number; addresses: bigint[] }
  /** Its answer: a name for each address that has one ("name" or "name [module]"). */
  | { type: typeof FrameType.SYMBOLS; id: number; at: [bigint, string][] }
  | { type: typeof FrameType.DATA; id: number; payload: Uint8Array }
  | { type: typeof FrameType.BTF; id: number; offset: number; total: number; bytes: Uint8Array }
  | { type: typeof FrameType.END; id: number; stats: EndStats }
  | { type: typeof FrameType.ERROR; id: number; code: number; message: string };

/** A frame that cannot be accepted. `fatal` means the stream can no longer be trusted. */
export class FrameError extends Error {
  /** The request id of the bad frame, when known. */
  readonly id: number;
  readonly code: ErrorCode;
  readonly fatal: boolean;
  constructor(message: string, code: ErrorCode, id = 0, fatal = false) {
    super(message);
    this.name = "FrameError";
    this.code = code;
    this.id = id;
    this.fatal = fatal;
  }
}

const HEADER = 9; // u32 length, u8 type, u32 id
const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** A raw frame: type, id and an unparsed payload. */
export interface RawFrame {
  type: number;
  id: number;
  payload: Uint8Array;
}

/**
 * Splits a byte stream into raw frames. Feed it chunks with {@linkcode push}, then take frames
 * with {@linkcode next} until it returns undefined. A frame larger than `maxFrame` throws a fatal
 * {@linkcode FrameError} as soon as its length is read, before any of it is buffered.
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
  constructor(options: { maxFrame?: number } = {}) {
    this.#maxFrame = options.maxFrame ?? LIMITS.maxFrame;
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
      const length = this.#readU32();
      if (length < HEADER - 4 || length > this.#maxFrame) {
        throw new FrameError(
          `Cannot accept frame: length ${length} is outside 5..${this.#maxFrame}`,
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

/** Reads fields of one payload, throwing {@linkcode FrameError} when it runs short. */
class Reader {
  #view: DataView;
  #bytes: Uint8Array;
  #at = 0;
  #what: string;
  #id: number;
  constructor(bytes: Uint8Array, what: string, id: number) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#what = what;
    this.#id = id;
  }
  #need(n: number): number {
    if (this.#at + n > this.#bytes.length) {
      throw this.error(
        `payload ends at byte ${this.#bytes.length}, ${n} more needed at ${this.#at}`,
      );
    }
    const at = this.#at;
    this.#at += n;
    return at;
  }
  error(problem: string): FrameError {
    return new FrameError(
      `Cannot decode ${this.#what} frame: ${problem}`,
      ErrorCode.BAD_FRAME,
      this.#id,
    );
  }
  u8(): number {
    return this.#view.getUint8(this.#need(1));
  }
  u16(): number {
    return this.#view.getUint16(this.#need(2), true);
  }
  u32(): number {
    return this.#view.getUint32(this.#need(4), true);
  }
  u64(): bigint {
    return this.#view.getBigUint64(this.#need(8), true);
  }
  /** A u64 that must fit a double exactly (sizes, counts, nanoseconds). */
  count(): number {
    const v = this.u64();
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw this.error(`value ${v} is too large`);
    return Number(v);
  }
  bytes(n: number): Uint8Array {
    const at = this.#need(n);
    return this.#bytes.subarray(at, at + n);
  }
  string(): string {
    const n = this.u16();
    if (n > LIMITS.maxString) throw this.error(`string of ${n} bytes exceeds ${LIMITS.maxString}`);
    try {
      return decoder.decode(this.bytes(n));
    } catch {
      throw this.error("string is not valid UTF-8");
    }
  }
  /** A u16 count, then that many items. */
  list<T>(item: () => T, max: number): T[] {
    const n = this.u16();
    if (n > max) throw this.error(`list of ${n} items exceeds ${max}`);
    return Array.from({ length: n }, item);
  }
  get left(): number {
    return this.#bytes.length - this.#at;
  }
  end(): void {
    if (this.left !== 0) throw this.error(`${this.left} unexpected trailing bytes`);
  }
}

/** Writes fields into a growing buffer. */
class Writer {
  #buf = new Uint8Array(64);
  #view = new DataView(this.#buf.buffer);
  #at = HEADER;
  #room(n: number): number {
    if (this.#at + n > this.#buf.length) {
      const bigger = new Uint8Array(Math.max(this.#buf.length * 2, this.#at + n));
      bigger.set(this.#buf.subarray(0, this.#at));
      this.#buf = bigger;
      this.#view = new DataView(bigger.buffer);
    }
    const at = this.#at;
    this.#at += n;
    return at;
  }
  u8(v: number): this {
    const at = this.#room(1);
    this.#view.setUint8(at, v);
    return this;
  }
  u16(v: number): this {
    const at = this.#room(2);
    this.#view.setUint16(at, v, true);
    return this;
  }
  u32(v: number): this {
    const at = this.#room(4);
    this.#view.setUint32(at, v, true);
    return this;
  }
  u64(v: bigint | number): this {
    const at = this.#room(8);
    this.#view.setBigUint64(at, BigInt(v), true);
    return this;
  }
  bytes(b: Uint8Array): this {
    const at = this.#room(b.length);
    this.#buf.set(b, at);
    return this;
  }
  string(s: string): this {
    const b = encoder.encode(s);
    if (b.length > LIMITS.maxString) {
      throw new RangeError(
        `Cannot encode string of ${b.length} bytes: limit is ${LIMITS.maxString}`,
      );
    }
    return this.u16(b.length).bytes(b);
  }
  finish(type: FrameType, id: number): Uint8Array {
    this.#view.setUint32(0, this.#at - 4, true);
    this.#view.setUint8(4, type);
    this.#view.setUint32(5, id, true);
    return this.#buf.subarray(0, this.#at);
  }
}

/** Encodes a frame for the wire. */
export function encodeFrame(frame: Frame): Uint8Array {
  const w = new Writer();
  switch (frame.type) {
    case FrameType.HELLO:
      w.u16(frame.version);
      if (frame.agent) {
        const a = frame.agent;
        if (a.btfHash.length !== 32) {
          throw new RangeError("Cannot encode HELLO: BTF hash must be 32 bytes");
        }
        w.string(a.kernelRelease).bytes(a.btfHash).u32(a.btfSize).string(a.bootId);
        w.u64(a.anchor).u32(a.agentPid).string(a.programs).u16(a.features.length);
        for (const f of a.features) w.string(f);
      }
      break;
    case FrameType.GET_BTF:
      break;
    case FrameType.READ:
      w.u64(frame.addr).u32(frame.len);
      break;
    case FrameType.PREFETCH:
      w.u8(frame.target).u32(frame.maxObjects).u32(frame.maxBytes).bytes(frame.plan);
      break;
    case FrameType.SYMBOLS:
      if ("names" in frame) {
        w.u8(0).u16(frame.names.length);
        for (const name of frame.names) w.string(name);
      } else if ("symbols" in frame) {
        w.u8(1).u16(frame.symbols.length);
        for (const [name, addr] of frame.symbols) w.string(name).u64(addr);
      } else if ("addresses" in frame) {
        w.u8(2).u16(frame.addresses.length);
        for (const addr of frame.addresses) w.u64(addr);
      } else {
        w.u8(3).u16(frame.at.length);
        for (const [addr, name] of frame.at) w.u64(addr).string(name);
      }
      break;
    case FrameType.DATA:
      w.bytes(frame.payload);
      break;
    case FrameType.BTF:
      w.u32(frame.offset).u32(frame.total).bytes(frame.bytes);
      break;
    case FrameType.END: {
      const s = frame.stats;
      w.u32(s.objects).u64(s.bytes).u32(s.faults).u32(s.pruned).u64(s.guestNs).u64(s.agentNs);
      w.u8(s.stop);
      w.u64(s.root);
      break;
    }
    case FrameType.ERROR:
      w.u16(frame.code).string(frame.message.slice(0, 1024));
      break;
  }
  return w.finish(frame.type, frame.id);
}

/**
 * Parses a raw frame's payload.
 * @throws {FrameError} (not fatal) for an unknown type or a malformed payload.
 */
export function parseFrame(raw: RawFrame): Frame {
  const name = TYPE_NAMES.get(raw.type);
  if (!name) {
    throw new FrameError(
      `Cannot decode frame: unknown type 0x${raw.type.toString(16).padStart(2, "0")}`,
      ErrorCode.UNKNOWN_TYPE,
      raw.id,
    );
  }
  const r = new Reader(raw.payload, name, raw.id);
  const id = raw.id;
  let frame: Frame;
  switch (raw.type) {
    case FrameType.HELLO: {
      const version = r.u16();
      if (r.left === 0) {
        frame = { type: FrameType.HELLO, id, version };
        break;
      }
      const agent: AgentInfo = {
        kernelRelease: r.string(),
        btfHash: r.bytes(32).slice(),
        btfSize: r.u32(),
        bootId: r.string(),
        anchor: r.u64(),
        agentPid: r.u32(),
        programs: r.string(),
        features: r.list(() => r.string(), 64),
      };
      if (agent.btfSize > LIMITS.maxBtf) {
        throw r.error(`BTF size ${agent.btfSize} exceeds the limit ${LIMITS.maxBtf}`);
      }
      frame = { type: FrameType.HELLO, id, version, agent };
      break;
    }
    case FrameType.GET_BTF:
      frame = { type: FrameType.GET_BTF, id };
      break;
    case FrameType.READ:
      frame = { type: FrameType.READ, id, addr: r.u64(), len: r.u32() };
      break;
    case FrameType.PREFETCH: {
      const target = r.u8();
      if (!Object.values(PrefetchTarget).includes(target as PrefetchTarget)) {
        throw new FrameError(
          `Cannot serve PREFETCH: unknown target ${target}`,
          ErrorCode.UNSUPPORTED,
          id,
        );
      }
      frame = {
        type: FrameType.PREFETCH,
        id,
        target: target as PrefetchTarget,
        maxObjects: r.u32(),
        maxBytes: r.u32(),
        plan: r.bytes(r.left),
      };
      break;
    }
    case FrameType.SYMBOLS: {
      const form = r.u8();
      const max = LIMITS.maxSymbols;
      if (form === 0) {
        frame = { type: FrameType.SYMBOLS, id, names: r.list(() => r.string(), max) };
      } else if (form === 1) {
        const symbols = r.list(() => [r.string(), r.u64()] as [string, bigint], max);
        frame = { type: FrameType.SYMBOLS, id, symbols };
      } else if (form === 2) {
        frame = { type: FrameType.SYMBOLS, id, addresses: r.list(() => r.u64(), max) };
      } else if (form === 3) {
        const at = r.list(() => [r.u64(), r.string()] as [bigint, string], max);
        frame = { type: FrameType.SYMBOLS, id, at };
      } else {
        throw r.error(`unknown form ${form}`);
      }
      break;
    }
    case FrameType.DATA:
      frame = { type: FrameType.DATA, id, payload: r.bytes(r.left) };
      break;
    case FrameType.BTF: {
      const offset = r.u32();
      const total = r.u32();
      if (total > LIMITS.maxBtf) throw r.error(`total ${total} exceeds the limit ${LIMITS.maxBtf}`);
      const bytes = r.bytes(r.left);
      if (offset + bytes.length > total) {
        throw r.error(`chunk at ${offset} of ${bytes.length} bytes passes the total ${total}`);
      }
      frame = { type: FrameType.BTF, id, offset, total, bytes };
      break;
    }
    case FrameType.END: {
      const stats: EndStats = {
        objects: r.u32(),
        bytes: r.count(),
        faults: r.u32(),
        pruned: r.u32(),
        guestNs: r.count(),
        agentNs: r.count(),
        stop: r.u8() as StopReason,
        root: r.u64(),
      };
      if (!Object.values(StopReason).includes(stats.stop)) {
        throw r.error(`unknown stop reason ${stats.stop}`);
      }
      frame = { type: FrameType.END, id, stats };
      break;
    }
    default: // FrameType.ERROR
      frame = { type: FrameType.ERROR, id, code: r.u16(), message: r.string() };
      break;
  }
  r.end();
  return frame;
}

/** The size of one DATA record's header: u64 address, u32 length. */
export const RECORD_HEADER = 12;

/**
 * Builds DATA frames by appending (address, bytes) records into one buffer, so the agent copies
 * each record once, from the ring buffer straight into the frame.
 */
export class DataFrameBuilder {
  #buf: Uint8Array;
  #view: DataView;
  #at = HEADER;
  #records = 0;
  constructor(capacity: number = LIMITS.dataFrame) {
    this.#buf = new Uint8Array(capacity);
    this.#view = new DataView(this.#buf.buffer);
  }
  get records(): number {
    return this.#records;
  }
  /** Room left for record bytes (after a record header). */
  get room(): number {
    return this.#buf.length - this.#at - RECORD_HEADER;
  }
  /** Appends a record; false when it does not fit (flush, then append again). */
  append(addr: bigint, bytes: Uint8Array): boolean {
    if (bytes.length > this.room) {
      if (this.#records === 0) {
        throw new RangeError(`Cannot frame a record of ${bytes.length} bytes: larger than a frame`);
      }
      return false;
    }
    this.#view.setBigUint64(this.#at, addr, true);
    this.#view.setUint32(this.#at + 8, bytes.length, true);
    this.#buf.set(bytes, this.#at + RECORD_HEADER);
    this.#at += RECORD_HEADER + bytes.length;
    this.#records++;
    return true;
  }
  /** Returns the frame (a copy) and empties the builder. */
  take(id: number): Uint8Array {
    this.#view.setUint32(0, this.#at - 4, true);
    this.#view.setUint8(4, FrameType.DATA);
    this.#view.setUint32(5, id, true);
    const out = this.#buf.slice(0, this.#at);
    this.#at = HEADER;
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
 * Iterates the records of a DATA payload.
 * @throws {FrameError} when a record's length runs past the payload.
 */
export function* dataRecords(payload: Uint8Array, id = 0): Generator<DataRecord> {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  let at = 0;
  while (at < payload.length) {
    if (at + RECORD_HEADER > payload.length) {
      throw new FrameError(
        `Cannot decode DATA frame: record header at ${at} is cut short`,
        ErrorCode.BAD_FRAME,
        id,
      );
    }
    const addr = view.getBigUint64(at, true);
    const len = view.getUint32(at + 8, true);
    const start = at + RECORD_HEADER;
    if (start + len > payload.length) {
      throw new FrameError(
        `Cannot decode DATA frame: record at ${at} claims ${len} bytes, ${
          payload.length - start
        } remain`,
        ErrorCode.BAD_FRAME,
        id,
      );
    }
    yield { addr, bytes: payload.subarray(start, start + len) };
    at = start + len;
  }
}

/**
 * Calls `onRecord` for each record of a DATA payload, with the address in two 32-bit halves
 * (no BigInt, for the hot path of a large prefetch) and a view of its bytes.
 * @throws {FrameError} when a record's length runs past the payload.
 */
export function forEachRecord(
  payload: Uint8Array,
  onRecord: (high: number, low: number, bytes: Uint8Array) => void,
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
    onRecord(
      view.getUint32(at + 4, true),
      view.getUint32(at, true),
      payload.subarray(start, start + len),
    );
    at = start + len;
  }
}

/** A human-readable name of a frame type code. */
export function frameTypeName(type: number): string {
  return TYPE_NAMES.get(type) ?? `0x${type.toString(16)}`;
}
