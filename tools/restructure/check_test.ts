import { join } from "node:path";
import { assertEquals } from "../../tests/support/mod.ts";
import { checkTree, resolve } from "./check.ts";

/** A tree of `files` in a temporary directory, removed on dispose. */
async function tree(files: Record<string, string>) {
  const root = await Deno.makeTempDir();
  for (const [path, text] of Object.entries(files)) {
    await Deno.mkdir(join(root, path, ".."), { recursive: true });
    await Deno.writeTextFile(join(root, path), text);
  }
  return { root, [Symbol.asyncDispose]: () => Deno.remove(root, { recursive: true }) };
}

Deno.test("checkTree() names each import of another folder's file and of its private files", async () => {
  await using t = await tree({
    "a/mod.ts": 'export { f } from "./f.ts";',
    "a/f.ts": "export function f() {}",
    "a/_g.ts": "export const g = 1;",
    "b/ok.ts": 'import { f } from "../a/mod.ts";',
    "b/deep.ts": 'import { f } from "../a/f.ts";',
    "b/private.ts": 'import type { g } from "../a/_g.ts";',
    "b/typed.ts": 'type F = import("../a/f.ts").F;',
    "b/spawn.ts":
      'new URL("../a/f.ts", import.meta.url); new URL("../a/gone.ts", import.meta.url);',
    "b/text.ts": 'import T from "../a/f.ts" with { type: "text" };',
    "a/own.ts": 'import { f } from "./mod.ts";',
    "a/own_test.ts": 'import { f } from "./mod.ts";',
  });
  assertEquals((await checkTree(t.root)).map((v) => v.message), [
    "a/own.ts:1 imports a/mod.ts: its own folder's mod.ts (a cycle)",
    "b/deep.ts:1 imports a/f.ts: not its folder's mod.ts",
    "b/private.ts:1 imports a/_g.ts: a private file of another folder",
    "b/spawn.ts:1 refers to a/gone.ts: no such file",
    "b/typed.ts:1 imports a/f.ts: not its folder's mod.ts",
  ]);
});

Deno.test("checkTree() counts a subfolder as a folder of its own, and resolves the import map", async () => {
  await using t = await tree({
    "deno.json": JSON.stringify({ imports: { "@page/": "./a/page/", "hono": "npm:hono@4" } }),
    "a/mod.ts": 'import { p } from "./page/p.js";',
    "a/page/p.js": 'export { q } from "@page/q.js"; export const p = 1;',
    "a/page/q.js": "export const q = 1;",
    "b/x.ts": 'import { q } from "@page/q.js"; import { Hono } from "hono";',
  });
  assertEquals((await checkTree(t.root)).map((v) => v.message), [
    "a/mod.ts:1 imports a/page/p.js: not its folder's mod.ts",
    "b/x.ts:1 imports a/page/q.js: not its folder's mod.ts",
  ]);
});

Deno.test("checkTree() names an import cycle through a mod.ts, but not one of types only", async () => {
  await using t = await tree({
    "a/mod.ts": 'export { f } from "./f.ts";',
    "a/f.ts": 'import { g } from "../b/mod.ts"; export const f = () => g;',
    "b/mod.ts": 'export { g } from "./g.ts";',
    "b/g.ts": 'import { f } from "../a/mod.ts"; export const g = () => f;',
    "c/mod.ts": 'export { h } from "./h.ts";',
    "c/h.ts": 'import type { K } from "../d/mod.ts"; export const h = 1;',
    "d/mod.ts": 'export { type K } from "./k.ts";',
    "d/k.ts": 'import { h } from "../c/mod.ts"; export type K = typeof h;',
  });
  assertEquals((await checkTree(t.root)).map((v) => v.message), [
    "a/mod.ts is part of an import cycle: a/mod.ts -> a/f.ts -> b/mod.ts -> b/g.ts -> a/mod.ts",
  ]);
});

Deno.test("checkTree() keeps ids/ to its own files and the README's table to the tree", async () => {
  await using t = await tree({
    "ids/main.ts": "",
    "ids/main_test.ts": "",
    "ids/loose.ts": "",
    "ids/linux/x.ts": "",
    "docs/a.png": "",
    "README.md":
      "# x\n\n## Layout\n\n| folder | what |\n| --- | --- |\n| `ids/` | the IDS |\n| `gone/` | - |\n\n## Next\n",
  });
  assertEquals((await checkTree(t.root)).map((v) => v.message), [
    "ids/loose.ts is loose in ids/: only main.ts, mod.ts, serve.ts belong there",
    "README's layout table has no row for docs/",
    "README's layout table has no row for ids/linux/",
    "README's layout table lists gone/, which is not a folder of the tree",
  ]);
});

Deno.test("resolve() keeps to the tree: packages, node: and paths out of the root are not its", () => {
  assertEquals(resolve("a/b/x.ts", "../../y.ts"), "y.ts");
  assertEquals(resolve("a/x.ts", ".."), "");
  assertEquals(resolve("a/x.ts", "../../y.ts"), undefined);
  assertEquals(resolve("a/x.ts", "node:fs"), undefined);
  assertEquals(resolve("a/x.ts", "npm:hono@4"), undefined);
});
