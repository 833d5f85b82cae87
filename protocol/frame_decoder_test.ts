/**
 * FrameDecoder: a frame is returned once its last byte is in, and a length out of bounds (for its
 * frame type, where that type has a limit of its own) is refused before its payload is buffered.
 */

import { assert, assertEquals, assertThrows } from "../tests/support/mod.ts";
import { encodeFrame, ErrorCode, FrameDecoder, FrameError, FrameType, parseFrame } from "./mod.ts";

Deno.test("FrameDecoder waits for a frame's last byte before returning it", () => {
  const bytes = encodeFrame({ type: FrameType.READ, id: 7, addr: 0xffff888000001000n, len: 4096 });
  const decoder = new FrameDecoder();
  for (let i = 0; i < bytes.length - 1; i++) {
    decoder.push(bytes.subarray(i, i + 1));
    assertEquals(decoder.next(), undefined);
  }
  decoder.push(bytes.subarray(bytes.length - 1));
  const frame = parseFrame(decoder.next()!);
  assertEquals(frame.type, FrameType.READ);
  assertEquals(decoder.buffered, 0);
});

Deno.test("FrameDecoder refuses an oversized length before buffering its payload", () => {
  const decoder = new FrameDecoder({ maxFrame: 1024 });
  const header = new Uint8Array(9);
  new DataView(header.buffer).setUint32(0, 1025, true);
  decoder.push(header);
  const error = assertThrows(() => decoder.next(), FrameError);
  assert(error.fatal, "an oversized frame is fatal");
  assertEquals(error.code, ErrorCode.TOO_LARGE);
});

Deno.test("FrameDecoder refuses a length too short to hold a type and an id", () => {
  const decoder = new FrameDecoder();
  decoder.push(new Uint8Array([2, 0, 0, 0, 1, 0]));
  assertThrows(() => decoder.next(), FrameError);
});

Deno.test("FrameDecoder takes a larger limit for the frame types given one, and only for them", () => {
  const big = encodeFrame({ type: FrameType.LOAD, id: 7, object: new Uint8Array(5000).fill(1) });
  const limits = new Map([[FrameType.LOAD, 9 + 5000]]);
  const decoder = new FrameDecoder({ maxFrame: 1024, maxFrameOf: limits });
  // The length alone says nothing yet: the type decides.
  decoder.push(big.subarray(0, 4));
  assertEquals(decoder.next(), undefined);
  decoder.push(big.subarray(4));
  const frame = parseFrame(decoder.next()!);
  assert(frame.type === FrameType.LOAD && frame.object.length === 5000, "the LOAD frame");
  // Over its type's limit, or of another type over maxFrame: refused once the type is known.
  const over = encodeFrame({ type: FrameType.LOAD, id: 8, object: new Uint8Array(5001) });
  const other = encodeFrame({ type: FrameType.DATA, id: 9, payload: new Uint8Array(2000) });
  for (const bytes of [over, other]) {
    const d = new FrameDecoder({ maxFrame: 1024, maxFrameOf: limits });
    d.push(bytes.subarray(0, 5));
    const error = assertThrows(() => d.next(), FrameError);
    assert(error.fatal && error.code === ErrorCode.TOO_LARGE, error.message);
  }
});
