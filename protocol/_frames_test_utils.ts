/**
 * What the frame tests share: an arbitrary of every frame type (fast-check), and decoding a
 * byte stream cut anywhere back into frames.
 *
 * @module
 */
import fc from "fast-check";
import { FrameDecoder } from "./frame_decoder.ts";
import { parseFrame } from "./frame_parser.ts";
import {
  type AgentInfo,
  type Frame,
  FrameType,
  HoldState,
  LIMITS,
  PrefetchTarget,
  StopReason,
} from "./frames.ts";

const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
export const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const safe = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const text = fc.string({ maxLength: 200 });

const agentInfo: fc.Arbitrary<AgentInfo> = fc.record({
  kernelRelease: text,
  btfHash: fc.uint8Array({ minLength: 32, maxLength: 32 }),
  btfSize: fc.integer({ min: 0, max: LIMITS.maxBtf }),
  bootId: text,
  anchor: u64,
  agentPid: u32,
  programs: text,
  features: fc.array(text, { maxLength: 4 }),
});

export const frame: fc.Arbitrary<Frame> = fc.oneof(
  fc.record({
    type: fc.constant(FrameType.HELLO),
    id: u32,
    version: fc.integer({ min: 0, max: 0xffff }),
  }),
  fc.record({
    type: fc.constant(FrameType.HELLO),
    id: u32,
    version: fc.integer({ min: 0, max: 0xffff }),
    agent: agentInfo,
  }),
  fc.record({ type: fc.constant(FrameType.GET_BTF), id: u32 }),
  fc.record({ type: fc.constant(FrameType.READ), id: u32, addr: u64, len: u32 }),
  fc.record({
    type: fc.constant(FrameType.PREFETCH),
    id: u32,
    target: fc.constantFrom(PrefetchTarget.TASKS, PrefetchTarget.PLAN),
    maxObjects: u32,
    maxBytes: u32,
    plan: fc.uint8Array({ maxLength: 300 }),
    delta: fc.record({ base: u32 }),
  }, { requiredKeys: ["type", "id", "target", "maxObjects", "maxBytes", "plan"] }),
  fc.record({
    type: fc.constant(FrameType.SYMBOLS),
    id: u32,
    names: fc.array(text, { maxLength: 8 }),
  }),
  fc.record({
    type: fc.constant(FrameType.SYMBOLS),
    id: u32,
    symbols: fc.array(fc.tuple(text, u64), { maxLength: 8 }),
  }),
  fc.record({
    type: fc.constant(FrameType.SYMBOLS),
    id: u32,
    addresses: fc.array(u64, { maxLength: 8 }),
  }),
  fc.record({
    type: fc.constant(FrameType.SYMBOLS),
    id: u32,
    at: fc.array(fc.tuple(u64, text), { maxLength: 8 }),
  }),
  fc.record({
    type: fc.constant(FrameType.HOLD),
    id: u32,
    maxMs: fc.integer({ min: 1, max: LIMITS.maxHoldMs }),
  }),
  fc.record({ type: fc.constant(FrameType.RELEASE), id: u32 }),
  fc.record({
    type: fc.constant(FrameType.HELD),
    id: u32,
    hold: fc.record({
      state: fc.constantFrom(...Object.values(HoldState)),
      capMs: fc.integer({ min: 0, max: LIMITS.maxHoldMs }),
      freezeNs: safe,
      heldNs: safe,
    }),
  }),
  fc.record({
    type: fc.constant(FrameType.DATA),
    id: u32,
    payload: fc.uint8Array({ maxLength: 300 }),
  }),
  fc.record({
    type: fc.constant(FrameType.LOAD),
    id: u32,
    object: fc.uint8Array({ minLength: 1, maxLength: 300 }),
  }),
  fc.record({ type: fc.constant(FrameType.UNLOAD), id: u32 }),
  fc.record({
    type: fc.constant(FrameType.LOADED),
    id: u32,
    loaded: fc.record({
      anchor: u64,
      programs: fc.array(
        fc.record({
          name: text,
          section: text,
          type: text,
          tag: fc.stringMatching(/^[0-9a-f]{16}$/),
          instructions: u32,
        }),
        { maxLength: 4 },
      ),
    }),
  }),
  fc.record({ type: fc.constant(FrameType.LOG), id: u32, text: fc.uint8Array({ maxLength: 300 }) }),
  fc.uint8Array({ maxLength: 300 }).chain((bytes) =>
    fc.record({
      type: fc.constant(FrameType.BTF),
      id: u32,
      offset: fc.integer({ min: 0, max: 1000 }),
      bytes: fc.constant(bytes),
    }).map((f) => ({ ...f, total: f.offset + bytes.length + 7 }))
  ),
  fc.record({
    type: fc.constant(FrameType.END),
    id: u32,
    stats: fc.record({
      objects: u32,
      bytes: safe,
      faults: u32,
      pruned: u32,
      guestNs: safe,
      agentNs: safe,
      stop: fc.constantFrom(...Object.values(StopReason)),
      root: u64,
      generation: fc.integer({ min: 1, max: 0xffff_ffff }),
      carried: fc.integer({ min: 1, max: 0xffff_ffff }),
    }, {
      requiredKeys: ["objects", "bytes", "faults", "pruned", "guestNs", "agentNs", "stop", "root"],
    }),
  }),
  fc.record({
    type: fc.constant(FrameType.ERROR),
    id: u32,
    code: fc.integer({ min: 0, max: 0xffff }),
    message: text,
  }),
);

export function decodeAll(bytes: Uint8Array, cuts: number[] = []): Frame[] {
  const decoder = new FrameDecoder();
  const frames: Frame[] = [];
  let at = 0;
  for (const cut of [...cuts.filter((c) => c < bytes.length).sort((a, b) => a - b), bytes.length]) {
    decoder.push(bytes.subarray(at, Math.max(at, cut)));
    at = Math.max(at, cut);
    for (let raw = decoder.next(); raw; raw = decoder.next()) frames.push(parseFrame(raw));
  }
  return frames;
}
