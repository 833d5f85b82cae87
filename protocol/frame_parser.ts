/**
 * Parsing the payload of a raw frame ({@linkcode parseFrame}) into its typed frame.
 *
 * Every payload is hostile: each parser checks every length against the bytes it has. A bad
 * payload throws {@linkcode FrameError}, which names the frame and the problem.
 *
 * @module
 */
import {
  type AgentInfo,
  type EndStats,
  ErrorCode,
  type Frame,
  FRAME_TYPE_NAMES,
  FrameError,
  FrameType,
  HoldState,
  LIMITS,
  type LoadedProgram,
  PrefetchTarget,
  type RawFrame,
  StopReason,
} from "./frames.ts";

const decoder = new TextDecoder("utf-8", { fatal: true });
const HOLD_STATES: ReadonlySet<number> = new Set(Object.values(HoldState));

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

/**
 * Parses a raw frame's payload.
 * @throws {FrameError} (not fatal) for an unknown type or a malformed payload.
 */
export function parseFrame(raw: RawFrame): Frame {
  const name = FRAME_TYPE_NAMES.get(raw.type);
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
      const maxObjects = r.u32();
      const maxBytes = r.u32();
      const delta = r.u8();
      const base = r.u32();
      if (delta > 1) throw r.error(`delta flag ${delta} is neither 0 nor 1`);
      if (!delta && base) throw r.error(`a base generation ${base} without a delta`);
      frame = {
        type: FrameType.PREFETCH,
        id,
        target: target as PrefetchTarget,
        maxObjects,
        maxBytes,
        plan: r.bytes(r.left),
        ...(delta ? { delta: { base } } : {}),
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
    case FrameType.HOLD: {
      const maxMs = r.u32();
      if (maxMs < 1 || maxMs > LIMITS.maxHoldMs) {
        throw r.error(`maxMs ${maxMs} is outside 1..${LIMITS.maxHoldMs}`);
      }
      frame = { type: FrameType.HOLD, id, maxMs };
      break;
    }
    case FrameType.RELEASE:
      frame = { type: FrameType.RELEASE, id };
      break;
    case FrameType.HELD: {
      const state = r.u8();
      if (!HOLD_STATES.has(state)) throw r.error(`unknown hold state ${state}`);
      const capMs = r.u32();
      if (capMs > LIMITS.maxHoldMs) {
        throw r.error(`capMs ${capMs} exceeds the limit ${LIMITS.maxHoldMs}`);
      }
      const hold = { state: state as HoldState, capMs, freezeNs: r.count(), heldNs: r.count() };
      frame = { type: FrameType.HELD, id, hold };
      break;
    }
    case FrameType.LOAD: {
      const size = r.u32();
      if (size < 1 || size > LIMITS.maxObject) {
        throw new FrameError(
          `Cannot decode LOAD frame: an object of ${size} bytes is outside 1..${LIMITS.maxObject}`,
          ErrorCode.TOO_LARGE,
          id,
        );
      }
      frame = { type: FrameType.LOAD, id, object: r.bytes(size) };
      break;
    }
    case FrameType.UNLOAD:
      frame = { type: FrameType.UNLOAD, id };
      break;
    case FrameType.LOADED: {
      const anchor = r.u64();
      const programs = r.list((): LoadedProgram => {
        const program = {
          name: r.string(),
          section: r.string(),
          type: r.string(),
          tag: r.string(),
          instructions: r.u32(),
        };
        if (!/^[0-9a-f]{16}$/.test(program.tag)) {
          throw r.error(`tag "${program.tag.slice(0, 64)}" is not 16 hex digits`);
        }
        return program;
      }, LIMITS.maxPrograms);
      frame = { type: FrameType.LOADED, id, loaded: { anchor, programs } };
      break;
    }
    case FrameType.LOG:
      if (r.left > LIMITS.maxLoadLog) {
        throw r.error(`a log of ${r.left} bytes exceeds ${LIMITS.maxLoadLog}`);
      }
      frame = { type: FrameType.LOG, id, text: r.bytes(r.left) };
      break;
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
      // Absent when 0, as most ENDs (every answer but a delta PREFETCH's) have them.
      const generation = r.u32();
      const carried = r.u32();
      if (generation) stats.generation = generation;
      if (carried) stats.carried = carried;
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
