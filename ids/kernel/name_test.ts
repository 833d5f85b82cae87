import fc from "fast-check";
import { assert, assertEquals, assertThrows } from "../../tests/support/mod.ts";
import { decodeName, hexOf, nameBytes, nameHex } from "./name.ts";

const bytes = (...b: number[]) => new Uint8Array(b);
const utf8 = (text: string) => new TextEncoder().encode(text);

Deno.test("decodeName() decodes UTF-8 as it is", () => {
  assertEquals(decodeName(utf8("héllo")), "héllo");
  assertEquals(decodeName(utf8("进程")), "进程");
  assertEquals(decodeName(utf8("🦕")), "🦕");
  assertEquals(decodeName(utf8("\x1b[31mred\n")), "\x1b[31mred\n");
  assertEquals(decodeName(bytes(0xef, 0xbb, 0xbf, 0x61)), "\ufeffa", "a leading BOM is kept");
});

Deno.test("decodeName() shows each byte outside a well-formed sequence as \\xNN", () => {
  const cases: [number[], string][] = [
    [[0x62, 0x61, 0x64, 0xff, 0xfe], "bad\\xff\\xfe"],
    [[0x80, 0x61], "\\x80a"], // a lone continuation byte
    [[0xc0, 0x80], "\\xc0\\x80"], // overlong NUL
    [[0xe0, 0x80, 0xaf], "\\xe0\\x80\\xaf"], // overlong "/"
    [[0xed, 0xa0, 0x80], "\\xed\\xa0\\x80"], // a UTF-16 surrogate
    [[0xf4, 0x90, 0x80, 0x80], "\\xf4\\x90\\x80\\x80"], // past U+10FFFF
    [[0xe2, 0x82, 0x41], "\\xe2\\x82A"], // a sequence cut by an ASCII byte
    [[0xc3, 0xa9, 0xc3], "é\\xc3"], // a sequence cut by the end
  ];
  for (const [input, expected] of cases) assertEquals(decodeName(bytes(...input)), expected);
});

Deno.test("decodeName() doubles backslashes, so a literal \\x41 is no escape", () => {
  assertEquals(decodeName(utf8("a\\x41")), "a\\\\x41");
  assertEquals(decodeName(bytes(0x5c, 0xff)), "\\\\\\xff");
  assertEquals(nameBytes("a\\\\x41"), utf8("a\\x41"));
});

Deno.test("nameBytes() gives back the exact bytes of any name, and names are valid strings", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (input) => {
      const name = decodeName(input);
      assert(name.isWellFormed(), `${JSON.stringify(name)} is not well-formed`);
      assertEquals(nameBytes(name), input);
    }),
    { numRuns: 2000 },
  );
});

Deno.test("decodeName() agrees with a UTF-8 decoder wherever the bytes are UTF-8", () => {
  fc.assert(
    fc.property(fc.string({ unit: "grapheme", maxLength: 16 }), (text) => {
      assertEquals(decodeName(utf8(text)), text.replaceAll("\\", "\\\\"));
    }),
  );
});

Deno.test("nameBytes() rejects a backslash that starts no escape", () => {
  assertThrows(() => nameBytes("a\\b"), SyntaxError, '"\\" starts no escape');
  assertThrows(() => nameBytes("a\\xZZ"), SyntaxError, "a\\xZZ");
});

Deno.test("nameHex() is the bytes' hex only for names whose text does not show them plainly", () => {
  assertEquals(nameHex("bash"), undefined);
  assertEquals(nameHex("héllo"), undefined);
  assertEquals(nameHex("bad\\xff"), "626164ff");
  assertEquals(nameHex("a\\\\b"), "615c62");
  assertEquals(nameHex("a\nb"), "610a62");
  assertEquals(nameHex("\x1b[31m"), "1b5b33316d");
  assertEquals(nameHex("x\u202eevil"), "78e280ae6576696c");
  assertEquals(nameHex("zero\u200bwidth"), "7a65726fe2808b7769647468");
  assertEquals(nameHex("no\u00a0break"), "6e6fc2a0627265616b");
  assertEquals(hexOf("commHex", "bash"), {});
  assertEquals(hexOf("commHex", "a\nb"), { commHex: "610a62" });
});
