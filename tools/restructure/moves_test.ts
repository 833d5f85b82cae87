import { assertEquals, assertThrows } from "../../tests/support/mod.ts";
import { mentionRewriter, planMoves, relativeSpecifier, rewriteSource } from "./moves.ts";

const inTree = (paths: string[]) => (path: string) => paths.includes(path);

Deno.test("planMoves() moves a file's test and benchmark along, and tells done from vanished", () => {
  const planned = planMoves(
    { "a/x.ts": "b/y.ts", "a/done.ts": "b/done.ts", "a/gone.ts": "b/gone.ts" },
    inTree(["a/x.ts", "a/x_test.ts", "b/done.ts"]),
  );
  assertEquals([...planned.pending], [["a/x.ts", "b/y.ts"], ["a/x_test.ts", "b/y_test.ts"]]);
  assertEquals(planned.done, ["a/done.ts"]);
  assertEquals(planned.vanished, ["a/gone.ts"]);
});

Deno.test("planMoves() refuses a table that is not one of moves, naming the entry", () => {
  const exists = inTree(["a/x.ts", "a/y.ts", "b/taken.ts"]);
  assertThrows(() => planMoves({ "a/x.ts": "../x.ts" }, exists), TypeError, '"../x.ts" is not');
  assertThrows(
    () => planMoves({ "a/x.ts": "b/z.ts", "a/y.ts": "b/z.ts" }, exists),
    TypeError,
    '"a/x.ts" moves there too',
  );
  assertThrows(() => planMoves({ "a/x.ts": "a/y.ts", "a/y.ts": "b/y.ts" }, exists), TypeError);
  assertThrows(() => planMoves({ "a/x.ts": "b/taken.ts" }, exists), TypeError, "exists");
});

Deno.test("rewriteSource() points specifiers of and in moved files at the new places", () => {
  const moves = new Map([["a/x.ts", "a/sub/x.ts"], ["a/y.ts", "c/y.ts"]]);
  const aliases = new Map([["@a/", "a/"]]);
  const x = [
    'import { y } from "./y.ts";',
    'import { z } from "./z.ts";',
    'import { w } from "@a/w.js";',
    'const root = new URL("..", import.meta.url);',
    'const dir = new URL("./", import.meta.url);',
    "// See a/y.ts and ./a/y.ts, not ../a/y.ts nor a/y.tsx.",
  ].join("\n");
  assertEquals(rewriteSource("a/x.ts", x, moves, aliases).split("\n"), [
    'import { y } from "../../c/y.ts";',
    'import { z } from "../z.ts";',
    'import { w } from "@a/w.js";',
    'const root = new URL("../..", import.meta.url);',
    'const dir = new URL("../", import.meta.url);',
    "// See c/y.ts and ./c/y.ts, not ../a/y.ts nor a/y.tsx.",
  ]);
  assertEquals(
    rewriteSource("b/v.ts", 'export { x } from "../a/x.ts";\nimport "@a/x.ts";', moves, aliases),
    'export { x } from "../a/sub/x.ts";\nimport "@a/sub/x.ts";',
  );
  const unmoved = 'import { z } from "./z.ts";';
  assertEquals(rewriteSource("a/z_test.ts", unmoved, moves, aliases), unmoved);
});

Deno.test("mentionRewriter() rewrites paths named from the root in any text", () => {
  const rewrite = mentionRewriter(new Map([["src/cli.ts", "src/cli/commands.ts"]]));
  assertEquals(
    rewrite('"main": "src/cli.ts", `./src/cli.ts`; src/cli.tsx, x/src/cli.ts, src/cli.ts/'),
    '"main": "src/cli/commands.ts", `./src/cli/commands.ts`; src/cli.tsx, x/src/cli.ts, src/cli.ts/',
  );
});

Deno.test("relativeSpecifier() writes ./ for the same folder and keeps a trailing slash", () => {
  assertEquals(relativeSpecifier("a/x.ts", "a/y.ts"), "./y.ts");
  assertEquals(relativeSpecifier("a/b/x.ts", "c/mod.ts"), "../../c/mod.ts");
  assertEquals(relativeSpecifier("a/x.ts", "", false), "..");
  assertEquals(relativeSpecifier("a/x.ts", "a", true), "./");
});
