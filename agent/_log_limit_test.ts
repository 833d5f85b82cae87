import { assertEquals } from "../tests/support/mod.ts";
import { kindOf, limitLog } from "./_log_limit.ts";

Deno.test("limitLog() logs at most perSecond lines of a kind a second and counts the rest", () => {
  const lines: string[] = [];
  let clock = 0;
  const log = limitLog((line) => lines.push(line), { perSecond: 3, now: () => clock });
  for (let i = 0; i < 10; i++) log(`refused 127.0.0.1:${i}: too many (the total cap)`);
  log("refused 127.0.0.2:1: too many (the cap per address)");
  assertEquals(lines, [
    "refused 127.0.0.1:0: too many (the total cap)",
    "refused 127.0.0.1:1: too many (the total cap)",
    "refused 127.0.0.1:2: too many (the total cap)",
    "refused 127.0.0.2:1: too many (the cap per address)",
  ]);
  clock = 1000;
  log("refused 127.0.0.1:10: too many (the total cap)");
  assertEquals(lines.slice(4), [
    '(7 more lines like "refused 127.0.0.1:3: too many (the total cap)" in the last second, not logged)',
    "refused 127.0.0.1:10: too many (the total cap)",
  ]);
  log.flush();
  assertEquals(lines.length, 6, "nothing left out, nothing more to say");
});

Deno.test("limitLog() bounds the kinds it tracks", () => {
  const lines: string[] = [];
  const log = limitLog((line) => lines.push(line), { perSecond: 1, maxKinds: 2, now: () => 0 });
  for (const word of ["a", "b", "c", "d", "e"]) log(`line ${word}`);
  // "a" and "b" are kinds of their own; "c", "d" and "e" share one.
  assertEquals(lines, ["line a", "line b", "line c"]);
  log.flush();
  assertEquals(lines.slice(3), ['(2 more lines like "line d" in the last second, not logged)']);
});

Deno.test("limitLog() says what it left out when the second ends, without another line", async () => {
  const lines: string[] = [];
  const log = limitLog((line) => lines.push(line), { perSecond: 1 });
  log("a");
  log("a");
  log("a");
  assertEquals(lines, ["a"]);
  // The count is logged by a timer at the end of the second (waited for with a generous bound).
  for (let i = 0; i < 50 && lines.length < 2; i++) await new Promise((r) => setTimeout(r, 100));
  assertEquals(lines, ["a", '(2 more lines like "a" in the last second, not logged)']);
});

Deno.test("kindOf() leaves numbers out", () => {
  assertEquals(kindOf("dropped 127.0.0.1:4711: 5000 ms"), "dropped N.N.N.N:N: N ms");
});
