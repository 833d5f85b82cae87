/**
 * The project's module rules, checked over the tree (`tests/structure_test.ts` runs it in the test
 * command; `deno run -A tools/restructure/check.ts` prints the violations):
 *
 * - a file imports another folder only through that folder's `mod.ts` ("not its folder's
 *   mod.ts");
 * - a file whose name starts with `_` is imported only from its own folder ("a private file of
 *   another folder");
 * - a folder's files never import their own `mod.ts` (the module graph would run through the
 *   folder's surface back into the folder, a cycle); its `mod.ts` and its tests may;
 * - no import cycle runs through a `mod.ts` (a folder's surface that, while it loads, needs a
 *   module that needs the surface: what the cycle's modules use at load time may not be there
 *   yet); type-only imports do not count, they are gone at run time;
 * - a `new URL("./x.ts", import.meta.url)` names a file that exists;
 * - a folder listed in {@linkcode TOP_LEVEL} holds only the files listed there (and their tests);
 * - the README's layout table has one row per top-level folder and per folder of `ids/`, and no
 *   other.
 *
 * A folder is one directory: a subfolder is a folder of its own (`ids/linux/` is not part of
 * `ids/`), so a test of `ids/linux/` that uses the shared test helpers imports
 * `tests/support/mod.ts` like anyone else. What counts as an import: static imports and exports
 * (`import type` and `export ... from` included), `import()` and `import("x").Name` in types, and
 * import-map aliases of the project's own folders (deno.json's `"@console/"`). What does not:
 * imports of data (`with { type: "text" }`: the console's page files are text to `ids/console/`,
 * not modules), and `new URL(..., import.meta.url)`, which names a program to spawn (`main.ts`, a
 * worker) or a file to read: running a program is not using its folder's internals. Those are
 * still rewritten when files move (`apply.ts`), and must exist.
 *
 * @module
 */

import { join, normalize, posix } from "node:path";
import { fileURLToPath } from "node:url";
import { layoutFolders, layoutProblems, tableFolders } from "./layout.ts";
import { type Reference, references } from "./source.ts";

/** Paths (relative to the root, `/`-separated) the walk never enters. */
export const SKIPPED = [
  ".git",
  ".tools",
  ".guest",
  "node_modules",
  "bench/results",
  "bpf/out",
  "dist",
] as const;

/** Folders whose top level is limited to these files (and each one's `_test.ts`). */
export const TOP_LEVEL: Readonly<Record<string, readonly string[]>> = {
  ids: ["main.ts", "mod.ts", "serve.ts"],
};

/** Extensions of the sources the rules apply to. */
const SOURCE = /\.(ts|tsx|mts|js|mjs)$/;

/** One broken rule: `file` line `line` refers to `target`. */
export interface Violation {
  file: string;
  line: number;
  target: string;
  rule: "not-mod" | "private" | "own-mod" | "cycle" | "missing" | "top-level" | "layout";
  /** The sentence that names it, e.g. `a/x.ts:7 imports b/y.ts: not its folder's mod.ts`. */
  message: string;
}

/** A reference resolved to a file of the tree. */
export interface Resolved extends Reference {
  /** The referring file, relative to the root. */
  file: string;
  /** The file referred to, relative to the root (may not exist). */
  target: string;
}

/** Whether `path` is a test or a benchmark of its folder (`x_test.ts`, `x_bench.ts`). */
export function isTest(path: string): boolean {
  return /_(test|bench)\.[mc]?[jt]sx?$/.test(path);
}

/** The folder of `path` (`""` for the root). */
export function folderOf(path: string): string {
  const folder = posix.dirname(path);
  return folder === "." ? "" : folder;
}

/** Every source file under `root`, relative to it, sorted. */
export async function sourceFiles(root: string): Promise<string[]> {
  const files: string[] = [];
  const walk = async (folder: string) => {
    for await (const entry of Deno.readDir(join(root, folder))) {
      const path = folder ? `${folder}/${entry.name}` : entry.name;
      if ((SKIPPED as readonly string[]).includes(path)) continue;
      if (entry.isDirectory) await walk(path);
      else if (entry.isFile && SOURCE.test(path)) files.push(path);
    }
  };
  await walk("");
  return files.sort();
}

/** deno.json's import-map entries that name folders of the project (`"@console/": "./ids/..."`). */
export async function localAliases(root: string): Promise<Map<string, string>> {
  const aliases = new Map<string, string>();
  let config: { imports?: Record<string, string> };
  try {
    config = JSON.parse(await Deno.readTextFile(join(root, "deno.json")));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return aliases;
    throw error;
  }
  for (const [alias, target] of Object.entries(config.imports ?? {})) {
    if (target.startsWith("./") || target.startsWith("../")) {
      aliases.set(alias, normalize(target) + (target.endsWith("/") ? "/" : ""));
    }
  }
  return aliases;
}

/**
 * The file `specifier` in `file` refers to, relative to the root, or `undefined` when it is not
 * one of the project's (a package, `node:`, a URL, or a path out of the root).
 */
export function resolve(
  file: string,
  specifier: string,
  aliases: ReadonlyMap<string, string> = new Map(),
): string | undefined {
  let path: string;
  if (
    specifier.startsWith("./") || specifier.startsWith("../") || specifier === "." ||
    specifier === ".."
  ) {
    path = posix.normalize(posix.join(posix.dirname(file), specifier));
  } else {
    const alias = [...aliases.keys()].find((a) =>
      a.endsWith("/") ? specifier.startsWith(a) : specifier === a
    );
    if (alias === undefined) return undefined;
    path = posix.normalize(aliases.get(alias)! + specifier.slice(alias.length));
  }
  if (path === ".." || path.startsWith("../")) return undefined;
  return path === "." ? "" : path;
}

/** The references of every file of `files` (read from under `root`) to the project's files. */
export async function resolvedReferences(
  root: string,
  files: readonly string[],
): Promise<Resolved[]> {
  const aliases = await localAliases(root);
  const all: Resolved[] = [];
  for (const file of files) {
    const text = await Deno.readTextFile(join(root, file));
    let found: Reference[];
    try {
      found = references(text);
    } catch (error) {
      throw new SyntaxError(`Cannot read "${file}": ${(error as Error).message}`);
    }
    for (const reference of found) {
      const target = resolve(file, reference.specifier, aliases);
      if (target !== undefined) all.push({ ...reference, file, target });
    }
  }
  return all;
}

/** Whether `reference` loads a module (the rules' business), as opposed to naming a file. */
export function loadsModule(reference: Reference): boolean {
  if (reference.kind === "url") return false;
  return reference.attributeType === undefined || reference.attributeType === "javascript";
}

function violation(
  reference: Resolved,
  rule: Violation["rule"],
  what: string,
): Violation {
  const verb = reference.kind === "url"
    ? "refers to"
    : reference.kind === "export"
    ? "re-exports"
    : "imports";
  return {
    file: reference.file,
    line: reference.line,
    target: reference.target,
    rule,
    message: `${reference.file}:${reference.line} ${verb} ${reference.target}: ${what}`,
  };
}

/** Whether `reference` is still there at run time (a type-only import is not). */
function atRunTime(reference: Reference): boolean {
  if (!loadsModule(reference) || reference.kind === "type-query") return false;
  const names = reference.names;
  return !(reference.form === "named" && names?.length && names.every((n) => n.typeOnly));
}

/**
 * The import cycles that run through a `mod.ts`, each as the files from the `mod.ts` back to
 * it (`a/mod.ts`, `a/x.ts`, `b/mod.ts`, `b/y.ts`, `a/mod.ts`).
 */
export function modCycles(references: readonly Resolved[]): string[][] {
  const edges = new Map<string, string[]>();
  for (const reference of references) {
    if (!atRunTime(reference)) continue;
    const next = edges.get(reference.file) ?? [];
    if (!next.includes(reference.target)) next.push(reference.target);
    edges.set(reference.file, next);
  }
  const cycles: string[][] = [];
  const covered = new Set<string>();
  for (const mod of [...edges.keys()].filter((f) => posix.basename(f) === "mod.ts").sort()) {
    if (covered.has(mod)) continue;
    // Breadth first from the mod.ts: the shortest way back to it.
    const from = new Map<string, string>();
    const queue = [mod];
    let found = false;
    while (queue.length && !found) {
      const file = queue.shift()!;
      for (const next of edges.get(file) ?? []) {
        if (next === mod) {
          const cycle = [mod];
          for (let at = file; at !== mod; at = from.get(at)!) cycle.splice(1, 0, at);
          cycle.push(mod);
          cycles.push(cycle);
          for (const f of cycle) covered.add(f);
          found = true;
          break;
        }
        if (!from.has(next) && next !== mod) {
          from.set(next, file);
          queue.push(next);
        }
      }
    }
  }
  return cycles;
}

/** The broken rules among `references` (those of `files`, the tree's sources). */
export function violations(
  references: readonly Resolved[],
  files: readonly string[],
  exists: (path: string) => boolean,
): Violation[] {
  const found: Violation[] = [];
  for (const reference of references) {
    const { file, target } = reference;
    if (!loadsModule(reference)) {
      if (reference.kind === "url" && SOURCE.test(target) && !exists(target)) {
        found.push(violation(reference, "missing", "no such file"));
      }
      continue;
    }
    const own = folderOf(file) === folderOf(target);
    const name = posix.basename(target);
    if (own) {
      if (name === "mod.ts" && posix.basename(file) !== "mod.ts" && !isTest(file)) {
        found.push(violation(reference, "own-mod", "its own folder's mod.ts (a cycle)"));
      }
    } else if (name.startsWith("_")) {
      found.push(violation(reference, "private", "a private file of another folder"));
    } else if (name !== "mod.ts") {
      found.push(violation(reference, "not-mod", "not its folder's mod.ts"));
    }
  }
  for (const cycle of modCycles(references)) {
    found.push({
      file: cycle[0],
      line: 1,
      target: cycle[1],
      rule: "cycle",
      message: `${cycle[0]} is part of an import cycle: ${cycle.join(" -> ")}`,
    });
  }
  for (const [folder, allowed] of Object.entries(TOP_LEVEL)) {
    for (const file of files) {
      if (folderOf(file) !== folder) continue;
      const name = posix.basename(file);
      const tested = name.replace(/_(test|bench)(\.[a-z]+)$/, "$2");
      if (allowed.includes(name) || (isTest(name) && allowed.includes(tested))) continue;
      found.push({
        file,
        line: 1,
        target: folder,
        rule: "top-level",
        message: `${file} is loose in ${folder}/: only ${allowed.join(", ")} belong there`,
      });
    }
  }
  return found;
}

/** The broken rules of the tree under `root`. */
export async function checkTree(root: string): Promise<Violation[]> {
  const files = await sourceFiles(root);
  const known = new Set(files);
  const exists = (path: string) => {
    if (known.has(path)) return true;
    try {
      Deno.statSync(join(root, path));
      return true;
    } catch {
      return false;
    }
  };
  const found = violations(await resolvedReferences(root, files), files, exists);
  let readme: string | undefined;
  try {
    readme = await Deno.readTextFile(join(root, "README.md"));
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const listed = readme === undefined ? undefined : tableFolders(readme);
  if (listed) {
    for (const message of layoutProblems(listed, layoutFolders(root, SKIPPED))) {
      found.push({ file: "README.md", line: 1, target: "", rule: "layout", message });
    }
  }
  return found;
}

if (import.meta.main) {
  const root = fileURLToPath(new URL("../..", import.meta.url));
  const found = await checkTree(root);
  for (const v of found) console.log(v.message);
  console.error(`${found.length} violation${found.length === 1 ? "" : "s"}`);
  Deno.exit(found.length ? 1 : 0);
}
