/**
 * The text that routing through `mod.ts` files writes: import and export statements (names
 * sorted, `type` where it belongs), one module's named imports merged into one statement, and
 * a `mod.ts`'s `@module` block.
 *
 * @module
 */

import { resolve } from "./check.ts";
import { applyEdits, type Edit } from "./moves.ts";
import { type ImportedName, references } from "./source.ts";

function docText(doc: string | readonly string[]): string {
  return typeof doc === "string" ? doc : doc.join("\n");
}

/** The `@module` JSDoc block of `doc`. */
export function moduleComment(doc: string | readonly string[]): string {
  const lines = docText(doc).split("\n").map((line) => (line ? ` * ${line}` : " *"));
  return `/**\n${lines.join("\n")}\n *\n * @module\n */\n`;
}

/** One name a statement lists: `[type ]imported[ as local]`. */
function item(name: ImportedName): string {
  const alias = name.local === name.imported ? name.imported : `${name.imported} as ${name.local}`;
  return name.typeOnly ? `type ${alias}` : alias;
}

function byLocal(a: ImportedName, b: ImportedName): number {
  const x = a.local.toLowerCase();
  const y = b.local.toLowerCase();
  return x < y ? -1 : x > y ? 1 : a.local < b.local ? -1 : a.local > b.local ? 1 : 0;
}

/** `keyword [type ]{ names } from "specifier";`, names sorted. */
export function statement(
  keyword: "import" | "export",
  names: ImportedName[],
  specifier: string,
): string {
  const allType = keyword === "import" && names.every((n) => n.typeOnly);
  const listed = [...names].sort(byLocal).map((n) => item(allType ? { ...n, typeOnly: false } : n));
  return `${keyword} ${allType ? "type " : ""}{ ${listed.join(", ")} } from "${specifier}";`;
}

/** The end of `statementEnd`'s line, to delete a statement with its line. */
function lineEnd(text: string, end: number): number {
  return text[end] === "\n" ? end + 1 : end;
}

/**
 * `text` of `file` with named imports of one module merged into one statement (the first), if
 * any module is imported by several; `undefined` when there is nothing to merge.
 */
export function mergeImports(
  file: string,
  text: string,
  aliases: ReadonlyMap<string, string>,
): string | undefined {
  const groups = new Map<string, ReturnType<typeof references>>();
  for (const reference of references(text)) {
    if (reference.kind !== "import" || reference.form !== "named") continue;
    if (reference.attributeType !== undefined || !reference.names?.length) continue;
    if (reference.names.some((n) => n.imported === "default")) continue;
    const key = resolve(file, reference.specifier, aliases) ?? reference.specifier;
    groups.set(key, [...(groups.get(key) ?? []), reference]);
  }
  const edits: Edit[] = [];
  for (const group of groups.values()) {
    if (group.length < 2) continue;
    const byName = new Map<string, ImportedName>();
    for (const reference of group) {
      for (const name of reference.names!) {
        const known = byName.get(name.local);
        byName.set(name.local, { ...name, typeOnly: name.typeOnly && (known?.typeOnly ?? true) });
      }
    }
    const [first, ...rest] = group;
    edits.push({
      start: first.statementStart!,
      end: first.statementEnd!,
      text: statement("import", [...byName.values()], first.specifier),
    });
    for (const reference of rest) {
      edits.push({
        start: reference.statementStart!,
        end: lineEnd(text, reference.statementEnd!),
        text: "",
      });
    }
  }
  return edits.length ? applyEdits(text, edits) : undefined;
}

/** `text` with its `@module` block replaced by `comment` (or started with it). */
export function withDoc(text: string, comment: string): string {
  const block = /^\s*\/\*\*[\s\S]*?\*\/\n?/.exec(text);
  if (block && block[0].includes("@module")) return comment + text.slice(block[0].length);
  return comment + (text ? "\n" + text : "");
}
