/**
 * Writing frames for the wire: {@linkcode encodeFrame}.
 *
 * @module
 */
import { type Frame, FRAME_HEADER, FrameType, LIMITS } from "./frames.ts";

const encoder = new TextEncoder();

/** Writes fields into a growing buffer. */
class Writer {
  #buf = new Uint8Array(64);
  #view = new DataView(this.#buf.buffer);
  #at = FRAME_HEADER;
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
      w.u8(frame.target).u32(frame.maxObjects).u32(frame.maxBytes);
      w.u8(frame.delta ? 1 : 0).u32(frame.delta?.base ?? 0).bytes(frame.plan);
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
    case FrameType.HOLD:
      w.u32(frame.maxMs);
      break;
    case FrameType.RELEASE:
      break;
    case FrameType.HELD: {
      const h = frame.hold;
      w.u8(h.state).u32(h.capMs).u64(h.freezeNs).u64(h.heldNs);
      break;
    }
    case FrameType.LOAD:
      w.u32(frame.object.length).bytes(frame.object);
      break;
    case FrameType.UNLOAD:
      break;
    case FrameType.LOADED: {
      const { anchor, programs } = frame.loaded;
      if (programs.length > LIMITS.maxPrograms) {
        throw new RangeError(
          `Cannot encode LOADED: ${programs.length} programs exceed ${LIMITS.maxPrograms}`,
        );
      }
      w.u64(anchor).u16(programs.length);
      for (const p of programs) {
        w.string(p.name).string(p.section).string(p.type).string(p.tag).u32(p.instructions);
      }
      break;
    }
    case FrameType.LOG:
      w.bytes(frame.text.subarray(Math.max(0, frame.text.length - LIMITS.maxLoadLog)));
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
      w.u64(s.root).u32(s.generation ?? 0).u32(s.carried ?? 0);
      break;
    }
    case FrameType.ERROR:
      w.u16(frame.code).string(frame.message.slice(0, 1024));
      break;
  }
  return w.finish(frame.type, frame.id);
}
