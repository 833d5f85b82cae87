/** The tokenizer: a regular expression told from a division, an unterminated string refused. */

import { assertEquals, assertThrows } from "../../tests/support/mod.ts";
import { tokenize } from "./_tokenize.ts";

Deno.test("tokenize() tells a regex from a division and refuses an unterminated string", () => {
  assertEquals(tokenize("x = a / b / c").filter((t) => t.kind === "regex"), []);
  assertEquals(tokenize("return /a\\/[/]b/g.test(s)")[1].value, "/a\\/[/]b/g");
  assertThrows(() => tokenize('const s = "open\n'), SyntaxError, "unterminated string at line 1");
});
