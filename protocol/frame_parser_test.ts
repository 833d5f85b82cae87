/**
 * parseFrame() against hostile payloads: truncated, garbage, trailing bytes, unknown types, and
 * each field held to its protocol limit, refused with a FrameError that names it.
 */

import { assert, assertEquals, assertThrows } from "../tests/support/mod.ts";
import fc from "fast-check";
import {
  encodeFrame,
  ErrorCode,
  type Frame,
  FrameError,
  FrameType,
  HoldState,
  LIMITS,
  parseFrame,
  PrefetchTarget,
} from "./mod.ts";
import { decodeAll, frame } from "./_frames_test_utils.ts";

Deno.test("a HELLO announcing more BTF than the limit is refused before anything is allocated", () => {
  const agent = {
    kernelRelease: "6.1.0",
    btfHash: new Uint8Array(32),
    btfSize: LIMITS.maxBtf + 1,
    bootId: "b",
    anchor: 0xffff_8880_0000_0000n,
    agentPid: 1,
    programs: "",
    features: [],
  };
  const bytes = encodeFrame({ type: FrameType.HELLO, id: 0, version: 1, agent });
  const error = assertThrows(() => decodeAll(bytes), FrameError);
  assert(error.message.includes(`exceeds the limit ${LIMITS.maxBtf}`), error.message);
});

Deno.test("parseFrame() rejects every truncation of a valid frame with a FrameError", () => {
  fc.assert(
    fc.property(frame, fc.nat(), (f, seed) => {
      const bytes = encodeFrame(f);
      const payload = bytes.subarray(9);
      if (payload.length === 0) return;
      const cut = seed % payload.length;
      const raw = { type: bytes[4], id: f.id, payload: payload.subarray(0, cut) };
      // DATA and LOG payloads have no fixed shape; HELLO without the agent part is valid at 2.
      if (f.type === FrameType.DATA || f.type === FrameType.LOG) return;
      if (f.type === FrameType.HELLO && cut === 2) return;
      if (f.type === FrameType.PREFETCH && cut >= 14) return; // the plan is the rest
      if (f.type === FrameType.BTF && cut >= 8) return;
      assertThrows(() => parseFrame(raw), FrameError);
    }),
  );
});

Deno.test("parseFrame() answers garbage with a FrameError or a frame, never another exception", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 255 }),
      fc.uint8Array({ maxLength: 200 }),
      (type, payload) => {
        try {
          parseFrame({ type, id: 1, payload });
        } catch (error) {
          assert(
            error instanceof FrameError,
            `unexpected ${(error as Error).name}: ${(error as Error).message}`,
          );
        }
      },
    ),
    { numRuns: 2000 },
  );
});

Deno.test("parseFrame() names an unknown type and keeps the request id", () => {
  const error = assertThrows(
    () => parseFrame({ type: 0x7e, id: 42, payload: new Uint8Array() }),
    FrameError,
  );
  assertEquals(error.code, ErrorCode.UNKNOWN_TYPE);
  assertEquals(error.id, 42);
  assert(error.message.includes("0x7e"));
  assert(!error.fatal);
});

Deno.test("parseFrame() rejects trailing bytes and an unknown prefetch target", () => {
  const read = encodeFrame({ type: FrameType.READ, id: 1, addr: 1n, len: 2 });
  const longer = new Uint8Array(read.length + 1);
  longer.set(read);
  assertThrows(
    () => parseFrame({ type: FrameType.READ, id: 1, payload: longer.subarray(9) }),
    FrameError,
  );
  const prefetch = encodeFrame({
    type: FrameType.PREFETCH,
    id: 1,
    target: PrefetchTarget.TASKS,
    maxObjects: 1,
    maxBytes: 1,
    plan: new Uint8Array(),
  });
  prefetch[9] = 99;
  const error = assertThrows(
    () => parseFrame({ type: FrameType.PREFETCH, id: 1, payload: prefetch.subarray(9) }),
    FrameError,
  );
  assertEquals(error.code, ErrorCode.UNSUPPORTED);
});

/** The payload of `frame` as encoded, with `edit` applied to a copy of it. */
function payloadOf(frame: Frame, edit: (view: DataView) => void = () => {}): Uint8Array {
  const payload = encodeFrame(frame).slice(9);
  edit(new DataView(payload.buffer));
  return payload;
}

Deno.test("parseFrame() holds a HOLD's maxMs to 1..LIMITS.maxHoldMs and names the bound", () => {
  const hold = { type: FrameType.HOLD, id: 3, maxMs: 1 } as const;
  for (const maxMs of [0, LIMITS.maxHoldMs + 1, 0xffff_ffff]) {
    const payload = payloadOf(hold, (v) => v.setUint32(0, maxMs, true));
    const error = assertThrows(
      () => parseFrame({ type: FrameType.HOLD, id: 3, payload }),
      FrameError,
    );
    assert(
      error.message.includes(`maxMs ${maxMs} is outside 1..${LIMITS.maxHoldMs}`),
      error.message,
    );
    assertEquals(error.id, 3);
    assert(!error.fatal, "a bad HOLD fails the request, not the stream");
  }
  const top = parseFrame({
    type: FrameType.HOLD,
    id: 3,
    payload: payloadOf({ ...hold, maxMs: LIMITS.maxHoldMs }),
  });
  assertEquals(top, { type: FrameType.HOLD, id: 3, maxMs: LIMITS.maxHoldMs });
  for (const payload of [new Uint8Array(3), new Uint8Array(5)]) {
    assertThrows(() => parseFrame({ type: FrameType.HOLD, id: 3, payload }), FrameError);
  }
  const release = new Uint8Array(1);
  assertThrows(() => parseFrame({ type: FrameType.RELEASE, id: 4, payload: release }), FrameError);
});

Deno.test("parseFrame() refuses a HELD with an unknown state, a cap past the limit or a huge time", () => {
  const held: Frame = {
    type: FrameType.HELD,
    id: 9,
    hold: { state: HoldState.HOLDING, capMs: 100, freezeNs: 1, heldNs: 2 },
  };
  const cases: [string, (v: DataView) => void][] = [
    ["unknown hold state 4", (v) => v.setUint8(0, 4)],
    ["unknown hold state 255", (v) => v.setUint8(0, 255)],
    [`capMs ${LIMITS.maxHoldMs + 1} exceeds`, (v) => v.setUint32(1, LIMITS.maxHoldMs + 1, true)],
    ["is too large", (v) => v.setBigUint64(5, 1n << 60n, true)],
    ["is too large", (v) => v.setBigUint64(13, (1n << 64n) - 1n, true)],
  ];
  for (const [problem, edit] of cases) {
    const payload = payloadOf(held, edit);
    const error = assertThrows(
      () => parseFrame({ type: FrameType.HELD, id: 9, payload }),
      FrameError,
    );
    assert(error.message.includes(problem), `${problem}: ${error.message}`);
    assert(error.message.includes("HELD"), error.message);
  }
  const long = new Uint8Array(payloadOf(held).length + 1);
  assertThrows(() => parseFrame({ type: FrameType.HELD, id: 9, payload: long }), FrameError);
});

Deno.test("parseFrame() rejects a string that is not UTF-8 or is too long", () => {
  const payload = new Uint8Array([1, 0, 2, 0, 0xff, 0xfe]);
  assertThrows(() => parseFrame({ type: FrameType.ERROR, id: 1, payload }), FrameError);
  const long = new Uint8Array(4 + LIMITS.maxString + 1);
  new DataView(long.buffer).setUint16(2, LIMITS.maxString + 1, true);
  assertThrows(() => parseFrame({ type: FrameType.ERROR, id: 1, payload: long }), FrameError);
});

Deno.test("parseFrame() holds LOAD, LOADED and LOG to their caps and names the field", () => {
  const load = (size: number, object: Uint8Array) => {
    const payload = new Uint8Array(4 + object.length);
    new DataView(payload.buffer).setUint32(0, size, true);
    payload.set(object, 4);
    return parseFrame({ type: FrameType.LOAD, id: 3, payload });
  };
  for (const size of [0, LIMITS.maxObject + 1]) {
    const error = assertThrows(() => load(size, new Uint8Array(1)), FrameError);
    assertEquals([error.code, error.id], [ErrorCode.TOO_LARGE, 3]);
    assert(error.message.includes(`object of ${size} bytes is outside 1..`), error.message);
  }
  assertThrows(() => load(10, new Uint8Array(4)), FrameError, "more needed");
  assertThrows(() => load(2, new Uint8Array(4)), FrameError, "trailing bytes");
  const loaded = (tag: string, count = 1) =>
    encodeFrame({
      type: FrameType.LOADED,
      id: 4,
      loaded: {
        anchor: 1n,
        programs: Array.from(
          { length: count },
          () => ({ name: "p", section: "uprobe", type: "kprobe", tag, instructions: 2 }),
        ),
      },
    });
  assertThrows(() => decodeAll(loaded("not-a-tag")), FrameError, "is not 16 hex digits");
  assertThrows(() => loaded("0123456789abcdef", LIMITS.maxPrograms + 1), RangeError);
  const log = { type: FrameType.LOG, id: 5, payload: new Uint8Array(LIMITS.maxLoadLog + 1) };
  assertThrows(() => parseFrame(log), FrameError, "exceeds");
});
