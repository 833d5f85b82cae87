import { assert, assertEquals } from "../../tests/support/mod.ts";
import { printable, printableName, terminalJson } from "./terminal.ts";

Deno.test("printable() escapes C0, DEL and C1 controls", () => {
  assertEquals(printable("a\nb\rc\td"), "a\\nb\\rc\\td");
  assertEquals(printable("\x1b[31mred\x1b[0m"), "\\x1b[31mred\\x1b[0m");
  assertEquals(printable("\x00\x07\x7f\x85\x9b"), "\\x00\\x07\\x7f\\x85\\x9b");
});

Deno.test("printable() escapes bidi, zero-width and other invisible characters", () => {
  const cases: [string, string][] = [
    ["x\u202eevil", "x\\u202eevil"], // RIGHT-TO-LEFT OVERRIDE
    ["x\u2066y\u2069", "x\\u2066y\\u2069"], // LEFT-TO-RIGHT ISOLATE, POP DIRECTIONAL ISOLATE
    ["x\u061cy", "x\\u061cy"], // ARABIC LETTER MARK
    ["zero\u200bwidth\u200d", "zero\\u200bwidth\\u200d"], // ZERO WIDTH SPACE, JOINER
    ["\ufeffbom", "\\ufeffbom"], // ZERO WIDTH NO-BREAK SPACE
    ["soft\u00adhyphen", "soft\\xadhyphen"],
    ["a\u2028b\u2029c", "a\\u2028b\\u2029c"], // line and paragraph separators
    ["no\u00a0break\u3000wide", "no\\xa0break\\u3000wide"], // spaces that are not U+0020
    ["pua\ue000", "pua\\ue000"], // private use
    ["tag\u{e0041}", "tag\\u{e0041}"], // TAG LATIN CAPITAL LETTER A
    ["lone\ud800", "lone\\ud800"], // a lone surrogate
  ];
  for (const [text, expected] of cases) assertEquals(printable(text), expected);
});

Deno.test("printable() leaves printable text and spaces as they are, doubling backslashes", () => {
  assertEquals(printable("héllo wörld 进程 🦕"), "héllo wörld 进程 🦕");
  assertEquals(printable("e\u0301"), "e\u0301", "a combining accent is part of its letter");
  assertEquals(printable("a literal \\n\n"), "a literal \\\\n\\n");
});

Deno.test("printableName() escapes as printable() does, but keeps a decoded name's escapes", () => {
  assertEquals(printableName("bad\\xff a\\\\b"), "bad\\xff a\\\\b");
  assertEquals(printableName("a\nb\x1b[31m\u202e"), "a\\nb\\x1b[31m\\u202e");
  assertEquals(printableName("héllo"), "héllo");
});

Deno.test("terminalJson() escapes what JSON.stringify leaves and stays JSON of the same value", () => {
  const value = { comm: "\x1b[2J\x7f\x85x\u202e\u200b\ue000\u{e0041}\n", path: "/tmp/é" };
  const text = terminalJson(value);
  assertEquals(JSON.parse(text), value);
  assert(
    // deno-lint-ignore no-control-regex -- the point is that none is there
    !/[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b\u202e\ue000]|\u{e0041}/u.test(text),
    text,
  );
  assert(text.includes('"comm": "\\u001b[2J\\u007f\\u0085x\\u202e\\u200b\\ue000'), text);
  assert(text.includes("\\udb40\\udc41"), "an astral character as its two surrogates");
  assert(text.includes('"path": "/tmp/é"'), text);
});
