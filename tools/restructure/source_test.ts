import { assertEquals } from "../../tests/support/mod.ts";
import { exportsOf, references } from "./source.ts";

function found(text: string) {
  return references(text).map((r) => [r.kind, r.specifier, r.form, r.attributeType]);
}

Deno.test("references() finds every kind of import, export and module URL", () => {
  const text = [
    'import { a, type B, c as d } from "./a.ts";',
    'import type { E } from "../b/e.ts";',
    'import f, { g } from "./f.ts";',
    'import * as ns from "./ns.ts";',
    'import "./side.ts";',
    'export { h } from "./h.ts";',
    'export * from "./star.ts";',
    'export type * from "./types.ts";',
    'import TEXT from "./page.html" with { type: "text" };',
    'const lazy = await import("./lazy.ts");',
    'type T = import("./t.ts").Name;',
    'type U = typeof import("./u.ts");',
    'const main = new URL("../main.ts", import.meta.url);',
  ].join("\n");
  assertEquals(found(text), [
    ["import", "./a.ts", "named", undefined],
    ["import", "../b/e.ts", "named", undefined],
    ["import", "./f.ts", "named", undefined],
    ["import", "./ns.ts", "namespace", undefined],
    ["import", "./side.ts", "bare", undefined],
    ["export", "./h.ts", "named", undefined],
    ["export", "./star.ts", "star", undefined],
    ["export", "./types.ts", "star", undefined],
    ["import", "./page.html", "named", "text"],
    ["dynamic", "./lazy.ts", undefined, undefined],
    ["type-query", "./t.ts", "named", undefined],
    ["type-query", "./u.ts", "namespace", undefined],
    ["url", "../main.ts", undefined, undefined],
  ]);
  const [named, typed, defaulted] = references(text);
  assertEquals(named.names, [
    { imported: "a", local: "a", typeOnly: false },
    { imported: "B", local: "B", typeOnly: true },
    { imported: "c", local: "d", typeOnly: false },
  ]);
  assertEquals(typed.names, [{ imported: "E", local: "E", typeOnly: true }]);
  assertEquals(defaulted.names?.map((n) => n.imported), ["default", "g"]);
  assertEquals(text.slice(named.start, named.end), "./a.ts");
  assertEquals(text.slice(named.statementStart, named.statementEnd), text.split("\n")[0]);
});

Deno.test("references() reads no specifier out of comments, strings, templates or regexes", () => {
  const text = [
    '// import { a } from "./comment.ts";',
    '/* export * from "./block.ts"; */',
    "const s = 'import x from \"./string.ts\"';",
    'const t = `import y from "./template.ts" ${1 + 1} from "./also.ts"`;',
    'const r = /from "\\.\\/regex.ts"/;',
    'const o = { from: "./key.ts" };',
    'const q = a / b / c; import { z } from "./real.ts";',
  ].join("\n");
  assertEquals(found(text), [["import", "./real.ts", "named", undefined]]);
});

Deno.test("exportsOf() lists declarations, re-exports and stars, each with whether it is a type", () => {
  const text = [
    "export interface I {}",
    "export type A = number;",
    "export const C = 1;",
    "export function f() {}",
    "export async function g() {}",
    "export class K {}",
    "export enum E { X }",
    "interface Local {}",
    "export { Local, f as h };",
    'export { x, type Y as Z } from "./other.ts";',
    'export * from "./star.ts";',
    'export type * from "./types.ts";',
    "function inner() { const export_ = 1; }",
  ].join("\n");
  const { names, stars } = exportsOf(text);
  assertEquals(names.map((n) => [n.name, n.typeOnly]), [
    ["I", true],
    ["A", true],
    ["C", false],
    ["f", false],
    ["g", false],
    ["K", false],
    ["E", false],
    ["Local", true],
    ["h", false],
    ["x", false],
    ["Z", true],
  ]);
  assertEquals(names.find((n) => n.name === "Z")?.from, { specifier: "./other.ts", name: "Y" });
  assertEquals(names.find((n) => n.name === "h")?.binding, "f");
  assertEquals(stars, [
    { specifier: "./star.ts", typeOnly: false },
    { specifier: "./types.ts", typeOnly: true },
  ]);
});
