import { assertEquals } from "../../tests/support/mod.ts";
import { type Files, routeThroughModules } from "./surface.ts";

/** A tree in memory; `apply` takes a run's writes into it. */
function memory(initial: Record<string, string>) {
  const texts = new Map(Object.entries(initial));
  const files: Files = {
    paths: () => [...texts.keys()].sort(),
    read: (path) => {
      const text = texts.get(path);
      if (text === undefined) throw new Deno.errors.NotFound(path);
      return text;
    },
    exists: (path) => texts.has(path),
    aliases: new Map(),
  };
  return {
    files,
    apply: (writes: Map<string, string>) => writes.forEach((text, path) => texts.set(path, text)),
  };
}

const DOCS = { a: "Folder a." };

Deno.test("routeThroughModules() routes imports through a new mod.ts that exports just those names", () => {
  const tree = memory({
    "a/x.ts": "export interface P {}\nexport function f() {}\nexport const unused = 1;\n",
    "a/y.ts": 'export { f as g } from "./x.ts";\nexport class Y {}\n',
    "b/z.ts": 'import { f, type P } from "../a/x.ts";\nimport { Y } from "../a/y.ts";\n',
    "b/w.ts": 'export type { P } from "../a/x.ts";\ntype G = import("../a/y.ts").Y;\n',
  });
  const { writes, problems } = routeThroughModules(tree.files, DOCS);
  assertEquals(problems, []);
  assertEquals(writes.get("b/z.ts"), 'import { f, type P, Y } from "../a/mod.ts";\n');
  assertEquals(
    writes.get("b/w.ts"),
    'export type { P } from "../a/mod.ts";\ntype G = import("../a/mod.ts").Y;\n',
  );
  assertEquals(
    writes.get("a/mod.ts"),
    '/**\n * Folder a.\n *\n * @module\n */\n\nexport { f, type P } from "./x.ts";\n' +
      'export { Y } from "./y.ts";\n',
  );
  tree.apply(writes);
  assertEquals(routeThroughModules(tree.files, DOCS), { writes: new Map(), problems: [] });
});

Deno.test("routeThroughModules() extends a mod.ts in place and keeps what it has", () => {
  const tree = memory({
    "a/mod.ts":
      '/**\n * Mine.\n *\n * @module\n */\n\nexport { f } from "./x.ts";\nexport * from "./t.ts";\n',
    "a/x.ts": "export function f() {}\nexport function h() {}\n",
    "a/t.ts": "export type T = 1;\n",
    "a/u.ts": "export const u = 1;\n",
    "b/z.ts":
      'import { h } from "../a/x.ts";\nimport type { T } from "../a/t.ts";\nimport { u } from "../a/u.ts";\n',
  });
  const { writes, problems } = routeThroughModules(tree.files, {});
  assertEquals(problems, []);
  assertEquals(
    writes.get("a/mod.ts"),
    '/**\n * Mine.\n *\n * @module\n */\n\nexport { f, h } from "./x.ts";\nexport * from "./t.ts";\n' +
      'export { u } from "./u.ts";\n',
  );
});

Deno.test("routeThroughModules() has a folder's own files import the files its mod.ts re-exports", () => {
  const tree = memory({
    "a/mod.ts": 'export { f, type P } from "./x.ts";\nexport { g } from "./y.ts";\n',
    "a/x.ts": "export interface P {}\nexport function f() {}\n",
    "a/y.ts": "export function g() {}\n",
    "a/z.ts": 'import { f, g, type P } from "./mod.ts";\n',
    "a/z_test.ts": 'import { f } from "./mod.ts";\n',
  });
  const { writes, problems } = routeThroughModules(tree.files, {});
  assertEquals(problems, []);
  assertEquals([...writes.keys()], ["a/z.ts"]);
  assertEquals(
    writes.get("a/z.ts"),
    'import { f, type P } from "./x.ts";\nimport { g } from "./y.ts";\n',
  );
});

Deno.test("routeThroughModules() names each import it cannot route, and why", () => {
  const tree = memory({
    "a/x.ts": "export const x = 1;\nexport default 2;\n",
    "a/_p.ts": "export const p = 1;\n",
    "c/y.ts": "export const x = 3;\n",
    "c/x.ts": "export const x = 4;\n",
    "b/z.ts": [
      'import { p } from "../a/_p.ts";',
      'import * as ns from "../a/x.ts";',
      'import two from "../a/x.ts";',
      'import { missing } from "../a/x.ts";',
      'import { x } from "../c/x.ts";',
      'import { x as y } from "../c/y.ts";',
      "",
    ].join("\n"),
  });
  assertEquals(routeThroughModules(tree.files, DOCS).problems, [
    "b/z.ts:1 imports a/_p.ts, a private file of another folder: rename it in moves.json",
    "b/z.ts:2 imports a/x.ts as a whole (namespace): name what it takes",
    "b/z.ts:3 imports a/x.ts's default export: a folder's surface has names only",
    'b/z.ts:4 imports a/x.ts: it does not export "missing"',
    'c/mod.ts would export "x" of both c/x.ts (for b/z.ts:5) and c/y.ts (for b/z.ts:6): rename one',
    'c/mod.ts does not exist and modules.json has no @module text for "c"',
  ]);
});
