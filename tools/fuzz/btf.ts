/**
 * Fuzz target of the BTF parser, with lookups on what it accepts.
 *
 * @module
 */

import fc from "fast-check";
import { BtfBuilder, BtfError, parseBtf } from "../../ids/btf/mod.ts";
import { inPlace, lazy, mutate, mutation, u32 } from "./_inputs.ts";
import type { FuzzTarget } from "./types.ts";

function sampleBtf(bitfield: boolean): Uint8Array {
  const b = new BtfBuilder();
  const int = b.addInt("int", 4, { signed: true });
  const char = b.addInt("char", 1, { char: true });
  const ptr = b.addPtr(3);
  b.addStruct("task_struct", {
    size: 32,
    members: [
      { name: "pid", typeId: int, bitOffset: 0 },
      { name: "next", typeId: ptr, bitOffset: 64 },
      { name: "comm", typeId: b.addArray(char, 16, { indexTypeId: int }), bitOffset: 128 },
      ...(bitfield ? [{ name: "flag", typeId: int, bitOffset: 32, bitfieldSize: 3 }] : []),
    ],
  });
  b.addEnum("state", { values: [["RUNNING", 0], ["DEAD", 16]] });
  b.addTypedef("pid_t", int);
  const proto = b.addFuncProto(int, [{ name: "p", typeId: ptr }]);
  b.addFunc("do_fork", proto);
  b.addConst(b.addVolatile(int));
  b.addFwd("file");
  b.addUnion("u", { size: 8, members: [{ name: "a", typeId: int, bitOffset: 0 }] });
  b.addFloat("double", 8);
  return b.build();
}

const btfSamples = lazy(() => [sampleBtf(false), sampleBtf(true)]);

/** Arbitrary and mutated BTF blobs; a blob the parser accepts is looked up too. */
export const btf: FuzzTarget<Uint8Array> = {
  name: "btf",
  description: "parseBtf (then lookups) over BTF blobs",
  arbitrary: fc.oneof(
    fc.uint8Array({ maxLength: 128 }),
    fc.tuple(fc.integer({ min: 0, max: 1 }), fc.array(mutation, { minLength: 1, maxLength: 3 }))
      .map(([which, ms]) => mutate(btfSamples()[which], ms)),
    fc.tuple(fc.integer({ min: 0, max: 1 }), fc.array(inPlace, { minLength: 1, maxLength: 3 }))
      .map(([which, ms]) => mutate(btfSamples()[which], ms)),
    fc.tuple(
      fc.integer({ min: 0, max: 1 }),
      fc.array(fc.record({ at: fc.nat({ max: 200 }), value: u32 }), { minLength: 1, maxLength: 4 }),
    ).map(([which, writes]) => {
      const bytes = btfSamples()[which].slice();
      const view = new DataView(bytes.buffer);
      for (const w of writes) view.setUint32(Math.min(w.at & ~3, bytes.length - 4), w.value, true);
      return bytes;
    }),
  ),
  run(bytes) {
    const parsed = parseBtf(bytes);
    for (const name of ["task_struct", "u", "pid_t", "nothing"]) {
      for (const id of parsed.find(name)) parsed.sizeof(parsed.resolve(id));
    }
    parsed.field("task_struct", "comm");
  },
  expected: (error) => error instanceof BtfError,
};
