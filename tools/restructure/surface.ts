/**
 * Folders' public surfaces: every import of another folder's file is routed through that
 * folder's `mod.ts`, which gets exactly the named exports that are imported so (grouped per
 * file, `export { a, type B } from "./file.ts"`); a folder's own files that import their own
 * `mod.ts` import the files it re-exports instead; imports that now name one module twice are
 * merged.
 *
 * What it cannot do by itself it reports instead, naming the import: an import of another
 * folder's `_` file, a namespace, default, bare or dynamic import of another folder's file, a
 * name two files of a folder would both export, a new `mod.ts` without `@module` text.
 *
 * Where an exported name is declared is found by `_origins.ts`; the statements written are
 * `_statements.ts`'s.
 *
 * @module
 */

import { posix } from "node:path";
import { folderOf, isTest, loadsModule, resolve } from "./check.ts";
import { applyEdits, type Edit, relativeSpecifier } from "./moves.ts";
import { Exported, exportedBy, type Origin } from "./_origins.ts";
import { mergeImports, moduleComment, statement, withDoc } from "./_statements.ts";
import { type ImportedName, references } from "./source.ts";

/** The files of a tree, read and written by path relative to its root. */
export interface Files {
  /** Every source file's path. */
  paths(): readonly string[];
  read(path: string): string;
  exists(path: string): boolean;
  aliases: ReadonlyMap<string, string>;
}

/** What routing a tree through its folders' `mod.ts` changes. */
export interface Surface {
  /** New text of each file to change (mod.ts files included). */
  writes: Map<string, string>;
  /** What needs a hand decision, one sentence each; nothing is written while there is any. */
  problems: string[];
}

/** `@module` text per folder, for the `mod.ts` files this creates. */
export type ModuleDocs = Readonly<Record<string, string | readonly string[]>>;

/** A name a folder's mod.ts must export, where it is declared, and who imports it first. */
interface Need {
  origin: Origin;
  by: string;
}

/** The names each folder's mod.ts must export. */
type Needs = Map<string, Map<string, Need>>;

/**
 * Routes every import of another folder's file through its `mod.ts`, and writes the `mod.ts`
 * files so that they export what is so imported (new ones start with `docs[folder]`). The
 * `@module` block of each `mod.ts` of a folder in `docs` is set to that text.
 */
export function routeThroughModules(files: Files, docs: ModuleDocs): Surface {
  const exported = new Exported(files);
  const writes = new Map<string, string>();
  const problems: string[] = [];
  const read = (path: string) => writes.get(path) ?? files.read(path);
  const needs: Needs = new Map();
  const need = (folder: string, name: string, origin: Origin, by: string) => {
    const names = needs.get(folder) ?? new Map<string, Need>();
    const known = names.get(name);
    if (known && (known.origin.file !== origin.file || known.origin.name !== origin.name)) {
      problems.push(
        `${folder}/mod.ts would export "${name}" of both ${known.origin.file} (for ` +
          `${known.by}) and ${origin.file} (for ${by}): rename one`,
      );
    }
    names.set(name, known ?? { origin, by });
    needs.set(folder, names);
  };

  // A folder's own files import the files its mod.ts re-exports, never the mod.ts.
  for (const file of files.paths()) {
    if (posix.basename(file) === "mod.ts" || isTest(file)) continue;
    const text = read(file);
    const edits: Edit[] = [];
    for (const reference of references(text)) {
      const target = resolve(file, reference.specifier, files.aliases);
      if (target !== posix.join(folderOf(file), "mod.ts") || !loadsModule(reference)) continue;
      if (reference.form !== "named" || reference.kind === "type-query") {
        problems.push(`${file}:${reference.line} imports its own folder's mod.ts as a whole`);
        continue;
      }
      const byFile = new Map<string, ImportedName[]>();
      for (const name of reference.names ?? []) {
        const origin = exported.origin(target, name.imported);
        if (!origin) {
          problems.push(`${file}:${reference.line}: ${target} does not export "${name.imported}"`);
          continue;
        }
        const named = { ...name, imported: origin.name };
        byFile.set(origin.file, [...(byFile.get(origin.file) ?? []), named]);
      }
      const keyword = reference.kind === "export" ? "export" : "import";
      const typeStatement = /^(import|export)\s+type\b/.test(
        text.slice(reference.statementStart, reference.statementEnd),
      );
      const statements = [...byFile].sort(([a], [b]) => a < b ? -1 : 1).map(([origin, names]) =>
        statement(
          keyword,
          names.map((n) => ({ ...n, typeOnly: n.typeOnly || typeStatement })),
          relativeSpecifier(file, origin),
        )
      );
      edits.push({
        start: reference.statementStart!,
        end: reference.statementEnd!,
        text: statements.join("\n"),
      });
    }
    if (edits.length) writes.set(file, applyEdits(text, edits));
  }

  // Imports of another folder's files go through its mod.ts.
  const routed = new Set<string>();
  for (const file of files.paths()) {
    const text = read(file);
    const edits: Edit[] = [];
    for (const reference of references(text)) {
      const target = resolve(file, reference.specifier, files.aliases);
      if (target === undefined || !loadsModule(reference)) continue;
      const folder = folderOf(target);
      const name = posix.basename(target);
      if (folder === folderOf(file) || name === "mod.ts") continue;
      const where = `${file}:${reference.line} imports ${target}`;
      if (name.startsWith("_")) {
        problems.push(`${where}, a private file of another folder: rename it in moves.json`);
        continue;
      }
      if (!files.exists(target)) {
        problems.push(`${where}, which does not exist`);
        continue;
      }
      if (reference.form !== "named" || !reference.names) {
        problems.push(
          `${where} as a whole (${reference.form ?? reference.kind}): name what it takes`,
        );
        continue;
      }
      if (reference.names.some((n) => n.imported === "default")) {
        problems.push(`${where}'s default export: a folder's surface has names only`);
        continue;
      }
      for (const imported of reference.names) {
        const origin = exported.origin(target, imported.imported);
        if (!origin) {
          problems.push(`${where}: it does not export "${imported.imported}"`);
          continue;
        }
        // A name another folder's file re-exports is exported by that file's folder as such.
        const inFolder = folderOf(origin.file) === folder;
        const from = inFolder
          ? origin
          : { file: target, name: imported.imported, typeOnly: origin.typeOnly };
        need(folder, imported.imported, from, `${file}:${reference.line}`);
      }
      const mod = posix.join(folder, "mod.ts");
      edits.push({
        start: reference.start,
        end: reference.end,
        text: relativeSpecifier(file, mod),
      });
    }
    if (edits.length) {
      writes.set(file, applyEdits(text, edits));
      routed.add(file);
    }
  }
  for (const file of routed) {
    const merged = mergeImports(file, read(file), files.aliases);
    if (merged !== undefined) writes.set(file, merged);
  }

  for (const folder of new Set([...needs.keys(), ...Object.keys(docs)])) {
    const mod = posix.join(folder, "mod.ts");
    const doc = docs[folder];
    const exists = files.exists(mod);
    if (!exists && doc === undefined) {
      problems.push(`${mod} does not exist and modules.json has no @module text for "${folder}"`);
      continue;
    }
    if (!exists && !needs.has(folder)) continue;
    let text = exists ? read(mod) : "";
    if (doc !== undefined) text = withDoc(text, moduleComment(doc));
    const updated = extendModule(mod, text, needs.get(folder) ?? new Map(), exported, problems);
    if (!exists || updated !== files.read(mod)) writes.set(mod, updated);
  }
  return { writes, problems };
}

/** The text of `mod` exporting every name of `needed` it does not export yet. */
function extendModule(
  mod: string,
  text: string,
  needed: Map<string, Need>,
  exported: Exported,
  problems: string[],
): string {
  const missing = new Map<string, ImportedName[]>();
  for (const [name, { origin, by }] of needed) {
    const known = exportedBy(mod, text, name, exported);
    if (known) {
      if (known.file !== origin.file || known.name !== origin.name) {
        problems.push(
          `${mod} exports "${name}" of ${known.file}, but ${by} imports the one of ${origin.file}`,
        );
      }
      continue;
    }
    const names = missing.get(origin.file) ?? [];
    names.push({ imported: origin.name, local: name, typeOnly: origin.typeOnly });
    missing.set(origin.file, names);
  }
  if (!missing.size) return text;
  const edits: Edit[] = [];
  const appended: string[] = [];
  const statements = references(text).filter((r) => r.kind === "export" && r.form === "named");
  for (const [file, names] of [...missing].sort(([a], [b]) => a < b ? -1 : 1)) {
    const specifier = relativeSpecifier(mod, file);
    const existing = statements.find((r) =>
      resolve(mod, r.specifier) === file &&
      !/^export\s+type\b/.test(text.slice(r.statementStart, r.statementEnd))
    );
    if (existing) {
      edits.push({
        start: existing.statementStart!,
        end: existing.statementEnd!,
        text: statement("export", [...existing.names!, ...names], existing.specifier),
      });
    } else {
      appended.push(statement("export", names, specifier));
    }
  }
  let out = applyEdits(text, edits);
  if (appended.length) {
    if (out && !out.endsWith("\n")) out += "\n";
    // A blank line after the @module block, none between statements.
    if (/\*\/\n$/.test(out)) out += "\n";
    out += appended.join("\n") + "\n";
  }
  return out;
}
