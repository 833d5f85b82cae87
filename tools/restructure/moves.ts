/**
 * Moving files: the move table (`moves.json`, old path → new path) made complete and checked,
 * and every reference to a moved file rewritten: relative specifiers and `new URL(...)` in
 * sources (resolved from where each file was), and paths named from the root (`ids/linux/pids.ts`) in
 * any text: comments, README commands, deno.json tasks, shell scripts.
 *
 * @module
 */

import { posix } from "node:path";
import { resolve } from "./check.ts";
import { references } from "./source.ts";

/** Old path → new path, both relative to the root. */
export type MoveTable = Record<string, string>;

/** Where a move stands in a tree. */
export interface PlannedMoves {
  /** Moves still to make (the old file exists), companions included. */
  pending: Map<string, string>;
  /** Moves already made (the new file exists, the old one not). */
  done: string[];
  /** Moves of which neither file exists: the file went away upstream. */
  vanished: string[];
}

/**
 * The companion of a moved file `x.ts`: `x_test.ts` and `x_bench.ts` move along (renamed alike)
 * unless the table says otherwise.
 */
function companions(from: string, to: string): [string, string][] {
  const match = /^(.*)\.(ts|js)$/;
  const a = from.match(match);
  const b = to.match(match);
  if (!a || !b) return [];
  return ["_test", "_bench"].map((suffix) => [
    `${a[1]}${suffix}.${a[2]}`,
    `${b[1]}${suffix}.${b[2]}`,
  ]);
}

/**
 * The table's moves as they stand in the tree (`exists` answers for paths relative to the root).
 * @throws {TypeError} naming the entry when the table is not a table of moves: a path that is
 * absolute or leaves the root, a file moved twice or onto another's place, a move onto a file
 * that exists.
 */
export function planMoves(table: MoveTable, exists: (path: string) => boolean): PlannedMoves {
  const moves = new Map<string, string>();
  for (const [from, to] of Object.entries(table)) {
    for (const path of [from, to]) {
      if (path !== posix.normalize(path) || path.startsWith("/") || path.startsWith("..")) {
        throw new TypeError(`Cannot move "${from}": "${path}" is not a path inside the tree`);
      }
    }
    moves.set(from, to);
  }
  for (const [from, to] of [...moves]) {
    for (const [a, b] of companions(from, to)) {
      if (!moves.has(a) && (exists(a) || exists(b))) moves.set(a, b);
    }
  }
  const targets = new Map<string, string>();
  for (const [from, to] of moves) {
    if (targets.has(to)) {
      throw new TypeError(`Cannot move "${from}" to "${to}": "${targets.get(to)}" moves there too`);
    }
    if (moves.has(to)) throw new TypeError(`Cannot move "${from}" to "${to}": "${to}" moves too`);
    targets.set(to, from);
  }
  const planned: PlannedMoves = { pending: new Map(), done: [], vanished: [] };
  for (const [from, to] of moves) {
    if (exists(from)) {
      if (exists(to)) throw new TypeError(`Cannot move "${from}" to "${to}": "${to}" exists`);
      planned.pending.set(from, to);
    } else if (exists(to)) planned.done.push(from);
    else planned.vanished.push(from);
  }
  return planned;
}

/** The specifier by which `file` refers to `target` (paths relative to the root). */
export function relativeSpecifier(file: string, target: string, trailingSlash = false): string {
  let path = posix.relative(posix.dirname(file), target || ".") || ".";
  if (!path.startsWith(".")) path = `./${path}`;
  if (trailingSlash && !path.endsWith("/")) path += "/";
  return path;
}

/** A text edit: replace `[start, end)` with `text`. */
export interface Edit {
  start: number;
  end: number;
  text: string;
}

/** `text` with `edits` (which must not overlap) applied. */
export function applyEdits(text: string, edits: readonly Edit[]): string {
  let out = "";
  let at = 0;
  for (const edit of [...edits].sort((a, b) => a.start - b.start)) {
    out += text.slice(at, edit.start) + edit.text;
    at = edit.end;
  }
  return out + text.slice(at);
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * A rewriter of paths named from the root: `a/b.ts` or `./a/b.ts`, not preceded by
 * another path's characters (so not `../a/b.ts` nor `x/a/b.ts`), nor followed by them.
 */
export function mentionRewriter(moves: ReadonlyMap<string, string>): (text: string) => string {
  if (moves.size === 0) return (text) => text;
  const paths = [...moves.keys()].sort((a, b) => b.length - a.length);
  const pattern = new RegExp(
    `(?<![\\w./@-])(\\./)?(${paths.map(escape).join("|")})(?![\\w/-])`,
    "g",
  );
  return (text) => text.replace(pattern, (_, dot = "", path) => dot + moves.get(path));
}

/**
 * The new text of source `file` (at its old path, importing from old paths) once `moves` are
 * made: each specifier of a moved file, or in a moved file, is recomputed from the file's new
 * place; the rest of the text has its root-relative paths rewritten. Import-map aliases stay
 * aliases while their target stays under the alias's folder.
 */
export function rewriteSource(
  file: string,
  text: string,
  moves: ReadonlyMap<string, string>,
  aliases: ReadonlyMap<string, string>,
): string {
  const mention = mentionRewriter(moves);
  const newFile = moves.get(file) ?? file;
  const edits: Edit[] = [];
  const spans: Edit[] = [];
  for (const reference of references(text)) {
    const target = resolve(file, reference.specifier, aliases);
    spans.push({ start: reference.start, end: reference.end, text: reference.specifier });
    if (target === undefined) continue;
    const newTarget = moves.get(target) ?? target;
    if (newTarget === target && newFile === file) continue;
    const relative = reference.specifier.startsWith(".");
    let specifier: string | undefined;
    if (!relative) {
      if (newTarget === target) continue;
      for (const [alias, folder] of aliases) {
        if (alias.endsWith("/") && newTarget.startsWith(folder)) {
          specifier = alias + newTarget.slice(folder.length);
        }
      }
    }
    specifier ??= relativeSpecifier(newFile, newTarget, reference.specifier.endsWith("/"));
    if (specifier !== reference.specifier) {
      edits.push({ start: reference.start, end: reference.end, text: specifier });
    }
  }
  // Root-relative mentions, outside the specifiers.
  let out = "";
  let at = 0;
  const byStart = new Map(edits.map((e) => [e.start, e]));
  for (const span of spans.sort((a, b) => a.start - b.start)) {
    out += mention(text.slice(at, span.start)) + (byStart.get(span.start)?.text ?? span.text);
    at = span.end;
  }
  return out + mention(text.slice(at));
}
