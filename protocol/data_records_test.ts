/**
 * The records of DATA frames: DataFrameBuilder packs them and asks for a flush, dataRecords() reads
 * them back and refuses a record longer than its frame.
 */

import { assert, assertEquals, assertThrows } from "../tests/support/mod.ts";
import fc from "fast-check";
import { DataFrameBuilder, dataRecords, FrameError, FrameType } from "./mod.ts";
import { decodeAll, u64 } from "./_frames_test_utils.ts";
import { concatBytes } from "./bytes.ts";

Deno.test("DataFrameBuilder packs records that dataRecords() reads back in order", () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(u64, fc.uint8Array({ maxLength: 500 })), { maxLength: 50 }),
      (records) => {
        const builder = new DataFrameBuilder(4096);
        const frames: Uint8Array[] = [];
        for (const [addr, bytes] of records) {
          if (!builder.append(addr, bytes)) {
            frames.push(builder.take(3));
            assert(builder.append(addr, bytes), "a record fits an empty frame");
          }
        }
        if (builder.records) frames.push(builder.take(3));
        const out = decodeAll(concatBytes(frames)).flatMap((f) => {
          assertEquals(f.type, FrameType.DATA);
          return f.type === FrameType.DATA ? [...dataRecords(f.payload)] : [];
        });
        assertEquals(out.map((r) => [r.addr, [...r.bytes]]), records.map(([a, b]) => [a, [...b]]));
      },
    ),
  );
});

Deno.test("DataFrameBuilder.appendFrom() frames the same records as append()", () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(u64, fc.uint8Array({ maxLength: 300 })), { maxLength: 30 }),
      (records) => {
        const a = new DataFrameBuilder(8192);
        const b = new DataFrameBuilder(8192);
        for (const [addr, bytes] of records) {
          // The record as the ring holds it: address, length, padding, bytes, after some junk.
          const source = new Uint8Array(5 + 16 + bytes.length).fill(0xee);
          new DataView(source.buffer).setBigUint64(5, addr, true);
          source.set(bytes, 5 + 16);
          assertEquals(a.append(addr, bytes), b.appendFrom(source, 5, 5 + 16, bytes.length));
        }
        assertEquals(b.take(7), a.take(7));
      },
    ),
  );
});

Deno.test("DataFrameBuilder asks for a flush once a frame holds flushAt bytes", () => {
  const builder = new DataFrameBuilder(4096, 100);
  const record = new Uint8Array(40);
  // 52 bytes per record after the 9-byte header: the third starts past 100.
  assert(builder.append(1n, record) && builder.append(2n, record), "two records fit");
  assertEquals(builder.append(3n, record), false, "the frame is due");
  assertEquals(builder.records, 2);
  builder.take(1);
  assert(builder.append(3n, record), "an empty frame takes the record");
  assert(builder.append(4n, new Uint8Array(3000)), "one record larger than flushAt fits");
});

Deno.test("dataRecords() rejects a record that claims more bytes than the frame holds", () => {
  const payload = new Uint8Array(20);
  new DataView(payload.buffer).setUint32(8, 9, true);
  assertThrows(() => [...dataRecords(payload)], FrameError);
  assertThrows(() => [...dataRecords(new Uint8Array(5))], FrameError);
});
