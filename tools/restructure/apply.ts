/**
 * `deno run -A tools/restructure/apply.ts [--dry-run]`: brings the tree to the layout of the
 * inputs beside this file, and routes imports so that the rules of `check.ts` hold:
 *
 * 1. moves the files of `moves.json` (old path → new path; a file's `_test.ts` and `_bench.ts`
 *    move with it) with `git mv`;
 * 2. rewrites every reference to a moved file: specifiers and `new URL(..., import.meta.url)` in
 *    sources, paths named from the root anywhere (comments, README, deno.json, shell scripts);
 * 3. routes every import of another folder's file through that folder's `mod.ts`, which gets
 *    exactly the names so imported; a new `mod.ts` (and every `mod.ts` of a folder listed in
 *    `modules.json`) starts with that file's `@module` text;
 * 4. writes the README's layout table from `layout.json`;
 * 5. formats what it writes as `deno fmt` does (so a file that only needs formatting is left alone).
 *
 * It is idempotent: run again, it changes nothing. It writes nothing when something needs a
 * hand decision (an import of another folder's `_` file, a namespace import of another folder,
 * a name clash in a `mod.ts`...): it prints each and exits with 1. `--dry-run` prints what it
 * would change and exits with 1 if that is anything.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { localAliases, SKIPPED, sourceFiles } from "./check.ts";
import { type LayoutRow, layoutTable, withLayoutTable } from "./layout.ts";
import { mentionRewriter, type MoveTable, planMoves, rewriteSource } from "./moves.ts";
import { type Files, type ModuleDocs, routeThroughModules } from "./surface.ts";

/** Where this tool keeps its inputs, relative to the root. */
const HERE = "tools/restructure";
/** The inputs, which name old paths on purpose: never rewritten. */
const INPUTS = ["moves.json", "modules.json", "layout.json"].map((name) => `${HERE}/${name}`);
const SOURCE = /\.(ts|tsx|mts|js|mjs)$/;
/** Text files that are not the project's to rewrite. */
const UNTOUCHED = new Set(["deno.lock"]);
const MAX_TEXT = 4 << 20;
/** Extensions `deno fmt` formats. */
const FORMATTED = /\.(ts|tsx|mts|js|mjs|json|jsonc|md)$/;

/** Every text file under `root` but this tool's inputs, relative to it. */
async function textFiles(root: string): Promise<string[]> {
  const files: string[] = [];
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const walk = async (folder: string) => {
    for await (const entry of Deno.readDir(join(root, folder))) {
      const path = folder ? `${folder}/${entry.name}` : entry.name;
      if ((SKIPPED as readonly string[]).includes(path) || INPUTS.includes(path)) continue;
      if (entry.isDirectory) await walk(path);
      else if (entry.isFile && !UNTOUCHED.has(path)) {
        const bytes = await Deno.readFile(join(root, path));
        if (bytes.length > MAX_TEXT || bytes.includes(0)) continue;
        try {
          decoder.decode(bytes);
          files.push(path);
        } catch {
          // Not text.
        }
      }
    }
  };
  await walk("");
  return files.sort();
}

async function readJson<T>(root: string, name: string): Promise<T> {
  return JSON.parse(await Deno.readTextFile(join(root, HERE, name))) as T;
}

async function run(command: string, args: string[], cwd: string): Promise<void> {
  const { code, stderr } = await new Deno.Command(command, { args, cwd, stdout: "null" }).output();
  if (code !== 0) {
    const message = new TextDecoder().decode(stderr).trim();
    throw new Error(`Cannot run "${command} ${args.join(" ")}": ${message}`);
  }
}

/** `text` as `deno fmt` (run in `root`, so with its configuration) formats a file `path`. */
async function formatted(root: string, path: string, text: string): Promise<string> {
  if (!FORMATTED.test(path)) return text;
  const ext = path.slice(path.lastIndexOf(".") + 1);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["fmt", `--ext=${ext}`, "-"],
    cwd: root,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const { code, stdout, stderr } = await child.output();
  if (code !== 0) {
    const message = new TextDecoder().decode(stderr).trim();
    throw new Error(`Cannot format the new "${path}": ${message}`);
  }
  return new TextDecoder().decode(stdout);
}

/** What a run changes: moves made, and the new text of each file (at its new path). */
export interface Plan {
  moves: Map<string, string>;
  writes: Map<string, string>;
  problems: string[];
  notes: string[];
}

/** Works out everything a run changes in the tree at `root`, without changing it. */
export async function plan(root: string): Promise<Plan> {
  const table = await readJson<MoveTable>(root, "moves.json");
  const docs = await readJson<ModuleDocs>(root, "modules.json");
  const layout = await readJson<LayoutRow[]>(root, "layout.json");
  const onDisk = (path: string) => {
    try {
      Deno.statSync(join(root, path));
      return true;
    } catch {
      return false;
    }
  };
  const planned = planMoves(table, onDisk);
  const moves = planned.pending;
  const notes = planned.vanished.map((path) => `"${path}" is not in the tree: its move is skipped`);
  const aliases = await localAliases(root);
  const mention = mentionRewriter(moves);

  // Every text file's new text, by its new path.
  const texts = new Map<string, string>();
  const writes = new Map<string, string>();
  for (const path of await textFiles(root)) {
    const text = await Deno.readTextFile(join(root, path));
    const next = SOURCE.test(path) ? rewriteSource(path, text, moves, aliases) : mention(text);
    const to = moves.get(path) ?? path;
    texts.set(to, next);
    if (next !== text || to !== path) writes.set(to, next);
  }
  const moved = new Set(moves.keys());
  const sources = [
    ...(await sourceFiles(root)).filter((path) => !moved.has(path)),
    ...moves.values(),
  ].filter((path) => SOURCE.test(path)).sort();
  const present = new Set(sources);
  const files: Files = {
    paths: () => sources,
    read(path) {
      const text = texts.get(path);
      if (text !== undefined) return text;
      return Deno.readTextFileSync(join(root, path));
    },
    exists: (path) => present.has(path) || texts.has(path) || (!moved.has(path) && onDisk(path)),
    aliases,
  };
  const surface = routeThroughModules(files, docs);
  for (const [path, text] of surface.writes) {
    texts.set(path, text);
    writes.set(path, text);
  }

  const readme = texts.get("README.md");
  if (readme !== undefined) {
    const next = withLayoutTable(readme, layoutTable(layout));
    if (next !== readme) writes.set("README.md", next);
  }
  // Formatted, and only what then differs from the tree.
  const inverse = new Map([...moves].map(([from, to]) => [to, from]));
  for (const [path, text] of writes) {
    const next = await formatted(root, path, text);
    const before = await Deno.readTextFile(join(root, inverse.get(path) ?? path)).catch(() => "");
    if (next === before && !inverse.has(path)) writes.delete(path);
    else writes.set(path, next);
  }
  return { moves, writes, problems: surface.problems, notes };
}

/** Makes `plan`'s changes in the tree at `root`. */
export async function apply(root: string, planned: Plan): Promise<void> {
  for (const [from, to] of planned.moves) {
    await Deno.mkdir(join(root, dirname(to)), { recursive: true });
    await run("git", ["mv", "--", from, to], root);
  }
  for (const [path, text] of planned.writes) {
    await Deno.mkdir(join(root, dirname(path)), { recursive: true });
    await Deno.writeTextFile(join(root, path), text);
  }
}

if (import.meta.main) {
  const root = fileURLToPath(new URL("../..", import.meta.url));
  const dryRun = Deno.args.includes("--dry-run");
  const planned = await plan(root);
  for (const note of planned.notes) console.error(`note: ${note}`);
  if (planned.problems.length) {
    for (const problem of planned.problems) console.error(`needs a decision: ${problem}`);
    console.error(`${planned.problems.length} problems; nothing was changed`);
    Deno.exit(1);
  }
  for (const [from, to] of planned.moves) console.log(`move ${from} -> ${to}`);
  for (const path of planned.writes.keys()) console.log(`write ${path}`);
  if (dryRun) Deno.exit(planned.moves.size || planned.writes.size ? 1 : 0);
  await apply(root, planned);
  console.log(`${planned.moves.size} files moved, ${planned.writes.size} files written`);
}
