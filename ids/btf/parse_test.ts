import { assert, assertEquals, assertThrows } from "../../tests/support/mod.ts";
import fc from "fast-check";
import { BtfBuilder, BtfError, type BtfHeaderOverrides, parseBtf } from "./mod.ts";
import { exercise, sampleKernel } from "./_test_utils.ts";

const sample = sampleKernel().builder.build();
const typeLen = new DataView(sample.buffer).getUint32(12, true);

/** Builds a BTF holding one int ("int", id 1), then `more`, with `header` fields overridden. */
function tiny(more: (b: BtfBuilder) => void = () => {}, header: BtfHeaderOverrides = {}) {
  const b = new BtfBuilder();
  b.addInt("int", 4, { signed: true });
  more(b);
  return b.build(header);
}

function rejects(bytes: Uint8Array, includes: string): void {
  assertThrows(() => parseBtf(bytes), BtfError, includes);
}

Deno.test("parseBtf() parses BTF that ends right after its header", () => {
  const btf = parseBtf(new BtfBuilder().build());
  assertEquals(btf.typeCount, 0);
  assertEquals(btf.type(0).kind, "VOID");
});

Deno.test("parseBtf() reads a buffer that is a misaligned view into a larger one", () => {
  const padded = new Uint8Array(sample.length + 1);
  padded.set(sample, 1);
  const btf = parseBtf(padded.subarray(1));
  assertEquals(btf.field("task_struct", "tasks.prev").offset, 24);
});

Deno.test("parseBtf() rejects a bad header", () => {
  rejects(sample.subarray(0, 23), "Cannot parse BTF: 23 bytes are too few for the 24-byte header");
  rejects(tiny(undefined, { magic: 0x1234 }), "bad magic 0x1234, expected 0xeb9f");
  rejects(tiny(undefined, { magic: 0x9feb }), "big-endian BTF (magic 0x9feb) is not supported");
  rejects(tiny(undefined, { version: 2 }), "unsupported version 2, expected 1");
  rejects(tiny(undefined, { flags: 1 }), "unsupported header flags 0x01");
  rejects(tiny(undefined, { hdrLen: 8 }), "header length 8 is below 24");
  rejects(tiny(undefined, { hdrLen: 0xffffffff }), "header length 4294967295 extends past");
});

Deno.test("parseBtf() rejects sections outside the buffer, misaligned or overlapping", () => {
  rejects(
    tiny(undefined, { typeLen: 0xfffffffc }),
    "the type section (offset 0, length 4294967292)",
  );
  rejects(tiny(undefined, { strOff: 0xffffffff }), "the string section (offset 4294967295");
  rejects(tiny(undefined, { typeOff: 2, typeLen: 8 }), "type section offset 2 is not 4-aligned");
  rejects(tiny(undefined, { typeLen: 14 }), "type section length 14 is not a multiple of 4");
  rejects(tiny(undefined, { strOff: 4 }), "the type and string sections overlap");
  rejects(tiny(undefined, { strLen: 0 }), "the string section is empty");
  rejects(tiny(undefined, { strLen: 2 }), "the string section does not end with NUL");
  rejects(
    tiny(undefined, { strOff: 17, strLen: 4 }),
    "the string section does not start with an empty string",
  );
});

Deno.test("parseBtf() rejects a buffer truncated at any point", () => {
  for (let cut = 0; cut < sample.length; cut++) {
    assertThrows(() => parseBtf(sample.subarray(0, cut)), BtfError, "Cannot parse BTF");
  }
});

Deno.test("parseBtf() rejects a type section that ends inside a record", () => {
  let complete = 0;
  for (let len = 0; len <= typeLen; len += 4) {
    const cut = sample.slice();
    new DataView(cut.buffer).setUint32(12, len, true);
    try {
      parseBtf(cut);
      complete++;
    } catch (error) {
      assert(error instanceof BtfError, `type_len ${len}: ${error}`);
    }
  }
  assert(complete > 1, "some cuts fall between records and parse");
  rejects(
    tiny((b) => b.addRaw([0, 4 << 24 | 5, 8, 0, 0])),
    "type 2 (STRUCT) extends past the type section",
  );
});

Deno.test("parseBtf() rejects unknown kinds", () => {
  rejects(tiny((b) => b.addRaw([0, 20 << 24, 0])), "type 2 has unknown kind 20");
  rejects(tiny((b) => b.addRaw([0, 0, 0])), "type 2 has unknown kind 0");
});

Deno.test("parseBtf() rejects string offsets outside the string section", () => {
  rejects(
    tiny((b) => b.addRaw([1000, 8 << 24, 1])),
    "type 2 (TYPEDEF) has name offset 1000 outside the string section",
  );
  rejects(
    tiny((b) => b.addRaw([0, 4 << 24 | 1, 4, 999, 1, 0])),
    "type 2 (STRUCT) entry 0 has name offset 999 outside the string section",
  );
  rejects(
    tiny((b) => b.addRaw([0, 6 << 24 | 2, 4, 0, 0, 0xffffffff, 0])),
    "type 2 (ENUM) entry 1 has name offset 4294967295",
  );
});

Deno.test("parseBtf() rejects type ids beyond the last type", () => {
  rejects(tiny((b) => b.addPtr(3)), "type 2 (PTR) refers to type 3, but the last type is 2");
  rejects(
    tiny((b) => b.addStruct("s", { size: 4, members: [{ name: "m", typeId: 9, bitOffset: 0 }] })),
    "type 2 (STRUCT) refers to type 9",
  );
  rejects(tiny((b) => b.addArray(1, 1, { indexTypeId: 7 })), "type 2 (ARRAY) refers to type 7");
  rejects(
    tiny((b) => b.addFuncProto(1, [{ name: "x", typeId: 5 }])),
    "(FUNC_PROTO) refers to type 5",
  );
  rejects(
    tiny((b) => b.addDatasec(".bss", { size: 4, vars: [{ typeId: 8, offset: 0, size: 4 }] })),
    "type 2 (DATASEC) refers to type 8",
  );
});

Deno.test("parseBtf() rejects malformed ints and declaration tags", () => {
  rejects(tiny((b) => b.addInt("wide", 3)), "type 2 (INT) has size 3");
  rejects(tiny((b) => b.addInt("over", 4, { bits: 30, bitOffset: 4 })), "has 30 bits at bit 4");
  rejects(tiny((b) => b.addDeclTag("t", 1, { componentIndex: -2 })), "has component index -2");
});

Deno.test("parseBtf() rejects typedef and qualifier chains that loop", () => {
  rejects(
    tiny((b) => {
      b.addTypedef("a", 3);
      b.addConst(2);
    }),
    "type 2 (TYPEDEF) starts a modifier chain that loops or is longer than 32 links",
  );
  rejects(tiny((b) => b.addVolatile(2)), "type 2 (VOLATILE) starts a modifier chain");
});

Deno.test("parseBtf() follows modifier chains of up to 32 links, and no longer", () => {
  const chain = (links: number) =>
    tiny((b) => {
      for (let i = 0; i < links; i++) b.addTypedef(`t${i}`, b.typeCount + 2);
      b.addStruct("end", { size: 4, members: [] });
    });
  const btf = parseBtf(chain(32));
  assertEquals(btf.resolve(2), 34);
  assertEquals(btf.sizeof(2), 4);
  rejects(chain(33), "type 2 (TYPEDEF) starts a modifier chain");
});

Deno.test("Btf.sizeof() fails on arrays of themselves and on sizes beyond 32 bits", () => {
  const loop = parseBtf(tiny((b) => b.addArray(2, 1)));
  assertThrows(() => loop.sizeof(2), BtfError, "arrays and variables nest deeper than 32 levels");
  const huge = parseBtf(tiny((b) => b.addArray(b.addArray(1, 0x10000), 0x10000)));
  assertThrows(() => huge.sizeof(3), BtfError, "its size exceeds 4294967295 bytes");
});

Deno.test("Btf.field() terminates on anonymous members that contain themselves", () => {
  const btf = parseBtf(tiny((b) => {
    b.addStruct("s", {
      size: 8,
      members: [{ typeId: 2, bitOffset: 0 }, { name: "x", typeId: 1, bitOffset: 0 }],
    });
  }));
  assertEquals(btf.field("s", "x").offset, 0);
  assertThrows(() => btf.field("s", "y"), BtfError, 'Cannot find field "y" in struct "s"');
});

Deno.test("Btf.field() fails on anonymous members nested deeper than 32 levels", () => {
  const btf = parseBtf(tiny((b) => {
    for (let i = 0; i < 40; i++) {
      b.addStruct(i === 0 ? "outer" : "", {
        size: 4,
        members: [{ typeId: b.typeCount + 2, bitOffset: 0 }],
      });
    }
    b.addStruct("", { size: 4, members: [{ name: "deep", typeId: 1, bitOffset: 0 }] });
  }));
  assertThrows(() => btf.field("outer", "deep"), BtfError, "nest deeper than 32 levels");
});

Deno.test("Btf.field() rejects members that lie outside their struct", () => {
  const btf = parseBtf(tiny((b) => {
    b.addStruct("s", {
      size: 8,
      members: [
        { name: "late", typeId: 1, bitOffset: 64 },
        { name: "odd", typeId: 1, bitOffset: 3 },
      ],
    });
  }));
  assertThrows(
    () => btf.field("s", "late"),
    BtfError,
    'Cannot resolve field "late" in struct "s": bytes 8 to 12 lie outside its 8 bytes',
  );
  assertThrows(() => btf.field("s", "odd"), BtfError, "it starts at bit 3, not on a byte");
});

Deno.test("parseBtf() and every Btf method throw only BtfError on corrupted BTF", () => {
  const outcomes = { parsed: 0, rejected: 0 };
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(sample.length - 1), fc.nat(255)), { minLength: 1, maxLength: 8 }),
      (edits) => {
        const bytes = sample.slice();
        for (const [at, value] of edits) bytes[at] = value;
        outcomes[exercise(bytes) ? "parsed" : "rejected"]++;
      },
    ),
    { numRuns: 2000 },
  );
  assert(outcomes.parsed > 0 && outcomes.rejected > 0, JSON.stringify(outcomes));
});

Deno.test("parseBtf() and every Btf method throw only BtfError on corrupted words", () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(typeLen / 4 - 1), fc.nat(0xffffffff)), {
        minLength: 1,
        maxLength: 4,
      }),
      (edits) => {
        const bytes = sample.slice();
        const view = new DataView(bytes.buffer);
        for (const [word, value] of edits) view.setUint32(24 + word * 4, value, true);
        exercise(bytes);
      },
    ),
    { numRuns: 2000 },
  );
});
