/**
 * Every frame type through encodeFrame(), the decoder and parseFrame() and back, however the
 * stream is cut.
 */

import { assertEquals } from "../tests/support/mod.ts";
import fc from "fast-check";
import { encodeFrame, type Frame } from "./mod.ts";
import { decodeAll, frame } from "./_frames_test_utils.ts";
import { concatBytes } from "./bytes.ts";

Deno.test("encodeFrame() and the decoder round-trip every frame type, whatever the chunking", () => {
  fc.assert(
    fc.property(
      fc.array(frame, { maxLength: 8 }),
      fc.array(fc.nat(4000), { maxLength: 10 }),
      (frames, cuts) => {
        const decoded = decodeAll(concatBytes(frames.map(encodeFrame)), cuts);
        assertEquals(decoded.length, frames.length);
        decoded.forEach((d, i) => assertEquals(normalize(d), normalize(frames[i])));
      },
    ),
  );
});

function normalize(f: Frame): unknown {
  return JSON.parse(
    JSON.stringify(
      f,
      (_, v) => typeof v === "bigint" ? `${v}n` : v instanceof Uint8Array ? [...v] : v,
    ),
  );
}
