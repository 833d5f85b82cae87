/**
 * Fuzz targets of the frame decoders, each fed as its caller reads a channel: the agent's
 * (requests from the IDS, in the agent's 64 KiB frame limit and LOAD's own, PREFETCH plans
 * decoded) and the
 * IDS's (answers from the agent, DATA records read both ways the client reads them).
 *
 * @module
 */

import fc from "fast-check";
import {
  concatBytes,
  dataRecords,
  decodePlan,
  encodeFrame,
  encodePlan,
  forEachRecord,
  type Frame,
  FrameDecoder,
  FrameError,
  FrameType,
  type HoldState,
  LIMITS,
  parseFrame,
  PlanError,
  PrefetchTarget,
  StopReason,
} from "../../protocol/mod.ts";
import { mutated, planBytes, u32, u64 } from "./_inputs.ts";
import { FuzzPropertyError, type FuzzTarget } from "./types.ts";

const kaddr = fc.oneof(
  fc.bigInt({ min: 0xffff_8880_0000_0000n, max: 0xffff_8880_0fff_ffffn }),
  u64,
);
const text = fc.string({ maxLength: 24, unit: "binary" });

/** A stream of frames, split into chunks where the peer's writes would split it. */
interface Stream {
  bytes: Uint8Array;
  cuts: number[];
}

function stream(frame: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Stream> {
  const bytes = fc.oneof(
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 256 }) },
    { weight: 1, arbitrary: headerThenNoise },
    {
      weight: 4,
      arbitrary: mutated(fc.array(frame, { minLength: 1, maxLength: 4 }).map(concatBytes)),
    },
  );
  return fc.record({ bytes, cuts: fc.array(fc.integer({ min: 1, max: 96 }), { maxLength: 6 }) });
}

/** A plausible frame header (length, a known type, an id), then noise. */
const headerThenNoise: fc.Arbitrary<Uint8Array> = fc.tuple(
  fc.integer({ min: 0, max: 300 }),
  fc.constantFrom(...Object.values(FrameType), 0x00, 0x7f, 0xff),
  u32,
  fc.uint8Array({ maxLength: 300 }),
).map(([length, type, id, payload]) => {
  const head = new Uint8Array(9);
  const view = new DataView(head.buffer);
  view.setUint32(0, length, true);
  view.setUint8(4, type);
  view.setUint32(5, id, true);
  return concatBytes([head, payload]);
});

function chunks({ bytes, cuts }: Stream): Uint8Array[] {
  const out: Uint8Array[] = [];
  let at = 0;
  for (const cut of cuts) {
    if (at >= bytes.length) break;
    out.push(bytes.subarray(at, at + cut));
    at += cut;
  }
  if (at < bytes.length) out.push(bytes.subarray(at));
  return out;
}

/** Feeds `input` to a decoder as a reader of the channel would, parsing every frame. */
function decodeStream(
  input: Stream,
  maxFrame: number | undefined,
  onFrame: (frame: Frame) => void,
  maxFrameOf?: ReadonlyMap<number, number>,
): void {
  const decoder = new FrameDecoder({ maxFrame, maxFrameOf });
  for (const chunk of chunks(input)) {
    decoder.push(chunk);
    for (let raw = decoder.next(); raw; raw = decoder.next()) {
      try {
        onFrame(parseFrame(raw));
      } catch (error) {
        if (error instanceof FrameError && !error.fatal) continue; // answered, stream goes on
        throw error;
      }
    }
  }
}

const request: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.record({ id: u32, version: fc.integer({ min: 0, max: 4 }) }).map(({ id, version }) =>
    encodeFrame({ type: FrameType.HELLO, id, version })
  ),
  u32.map((id) => encodeFrame({ type: FrameType.GET_BTF, id })),
  fc.record({ id: u32, addr: kaddr, len: fc.oneof(fc.integer({ min: 1, max: 8192 }), u32) }).map(
    (f) => encodeFrame({ type: FrameType.READ, ...f }),
  ),
  fc.record({ id: u32, target: fc.constantFrom(...Object.values(PrefetchTarget)) }).chain((f) =>
    fc.record({ maxObjects: u32, maxBytes: u32 }).map((limits) =>
      encodeFrame({
        type: FrameType.PREFETCH,
        ...f,
        ...limits,
        plan: f.target === PrefetchTarget.PLAN ? planBytes() : new Uint8Array(),
      })
    )
  ),
  fc.record({ id: u32, names: fc.array(text, { maxLength: 6 }) }).map((f) =>
    encodeFrame({ type: FrameType.SYMBOLS, ...f })
  ),
  // Past the limit too: the decoder refuses such a maxMs.
  fc.record({ id: u32, maxMs: fc.oneof(fc.integer({ min: 1, max: LIMITS.maxHoldMs }), u32) }).map(
    (f) => encodeFrame({ type: FrameType.HOLD, ...f }),
  ),
  u32.map((id) => encodeFrame({ type: FrameType.RELEASE, id })),
  fc.record({ id: u32, object: fc.uint8Array({ minLength: 1, maxLength: 128 }) }).map((f) =>
    encodeFrame({ type: FrameType.LOAD, ...f })
  ),
  u32.map((id) => encodeFrame({ type: FrameType.UNLOAD, id })),
);

function records(): fc.Arbitrary<Uint8Array> {
  return fc.array(fc.record({ addr: u64, bytes: fc.uint8Array({ maxLength: 64 }) }), {
    maxLength: 6,
  }).map((list) =>
    concatBytes(list.flatMap(({ addr, bytes }) => {
      const head = new Uint8Array(12);
      const view = new DataView(head.buffer);
      view.setBigUint64(0, addr, true);
      view.setUint32(8, bytes.length, true);
      return [head, bytes];
    }))
  );
}

const answer: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.record({
    id: u32,
    version: fc.integer({ min: 0, max: 4 }),
    kernelRelease: text,
    btfHash: fc.uint8Array({ minLength: 32, maxLength: 32 }),
    btfSize: u32,
    bootId: text,
    anchor: u64,
    agentPid: u32,
    programs: text,
    features: fc.array(text, { maxLength: 4 }),
  }).map(({ id, version, ...agent }) => encodeFrame({ type: FrameType.HELLO, id, version, agent })),
  fc.record({ id: u32, payload: records() }).map((f) =>
    encodeFrame({ type: FrameType.DATA, ...f })
  ),
  fc.record({ id: u32, offset: u32, total: u32, bytes: fc.uint8Array({ maxLength: 64 }) }).map(
    (f) => encodeFrame({ type: FrameType.BTF, ...f }),
  ),
  fc.record({
    id: u32,
    objects: u32,
    bytes: fc.nat(),
    faults: u32,
    pruned: u32,
    guestNs: fc.nat(),
    agentNs: fc.nat(),
    stop: fc.constantFrom(...Object.values(StopReason)),
    root: u64,
  }).map(({ id, ...stats }) => encodeFrame({ type: FrameType.END, id, stats })),
  fc.record({ id: u32, code: fc.integer({ min: 0, max: 0xffff }), message: text }).map((f) =>
    encodeFrame({ type: FrameType.ERROR, ...f })
  ),
  fc.record({ id: u32, symbols: fc.array(fc.tuple(text, u64), { maxLength: 4 }) }).map((f) =>
    encodeFrame({ type: FrameType.SYMBOLS, ...f })
  ),
  fc.record({
    id: u32,
    state: fc.integer({ min: 0, max: 5 }),
    capMs: fc.oneof(fc.integer({ min: 0, max: LIMITS.maxHoldMs }), u32),
    freezeNs: fc.nat(),
    heldNs: fc.nat(),
  }).map(({ id, state, ...rest }) =>
    encodeFrame({ type: FrameType.HELD, id, hold: { state: state as HoldState, ...rest } })
  ),
  fc.record({
    id: u32,
    anchor: u64,
    programs: fc.array(
      fc.record({
        name: text,
        section: text,
        type: text,
        tag: fc.oneof(fc.constant("0123456789abcdef"), text),
        instructions: u32,
      }),
      { maxLength: 4 },
    ),
  }).map(({ id, ...loaded }) => encodeFrame({ type: FrameType.LOADED, id, loaded })),
  fc.record({ id: u32, text: fc.uint8Array({ maxLength: 64 }) }).map((f) =>
    encodeFrame({ type: FrameType.LOG, ...f })
  ),
);

/** The agent's larger limit for LOAD (agent/server.ts): type, id, object size, object. */
const AGENT_MAX_FRAME_OF = new Map([[FrameType.LOAD, 9 + LIMITS.maxObject]]);

/** The agent's side: requests from the IDS, in the agent's frame limit, plans decoded. */
export const agentFrames: FuzzTarget<Stream> = {
  name: "agent-frames",
  description: "FrameDecoder + parseFrame (+ decodePlan of PREFETCH) over request streams",
  arbitrary: stream(request),
  run(input) {
    decodeStream(input, 64 << 10, (frame) => {
      if (frame.type === FrameType.PREFETCH && frame.target === PrefetchTarget.PLAN) {
        encodePlan(decodePlan(frame.plan));
      }
    }, AGENT_MAX_FRAME_OF);
  },
  expected: (error) => error instanceof FrameError || error instanceof PlanError,
};

/** The IDS's side: answers from the agent, DATA records read both ways the client reads them. */
export const idsFrames: FuzzTarget<Stream> = {
  name: "ids-frames",
  description: "FrameDecoder + parseFrame + dataRecords/forEachRecord over answer streams",
  arbitrary: stream(answer),
  run(input) {
    decodeStream(input, undefined, (frame) => {
      if (frame.type !== FrameType.DATA) return;
      const seen: string[] = [];
      let byHalves: unknown;
      try {
        forEachRecord(frame.payload, (high, low, _payload, _start, len) => {
          seen.push(`${high}:${low}:${len}`);
        }, frame.id);
      } catch (error) {
        byHalves = error;
      }
      const viaGenerator: string[] = [];
      for (const record of dataRecords(frame.payload, frame.id)) {
        const addr = record.addr;
        viaGenerator.push(
          `${Number(addr >> 32n)}:${Number(addr & 0xffff_ffffn)}:${record.bytes.length}`,
        );
      }
      if (byHalves) throw byHalves;
      if (seen.join() !== viaGenerator.join()) {
        throw new FuzzPropertyError(
          `forEachRecord and dataRecords disagree: [${seen}] vs [${viaGenerator}]`,
        );
      }
    });
  },
  expected: (error) => error instanceof FrameError,
};
