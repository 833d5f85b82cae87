/**
 * The README's layout table (the table under `## Layout`): one row per top-level folder and per
 * folder of `ids/`, written from `layout.json` and checked against the tree.
 *
 * @module
 */

import { join } from "node:path";

/** Folders whose subfolders each have a row (`""`: the root). */
export const LAYOUT_LEVELS = ["", "ids"] as const;

/** One row: the folder (`ids/linux/`) and what it holds. */
export type LayoutRow = readonly [folder: string, what: string];

const HEADING = "## Layout";

/** The folders the table must list, as `name/`, sorted. */
export function layoutFolders(root: string, skipped: readonly string[]): string[] {
  const folders: string[] = [];
  for (const level of LAYOUT_LEVELS) {
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(join(root, level))];
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) continue;
      throw error;
    }
    for (const entry of entries) {
      const path = level ? `${level}/${entry.name}` : entry.name;
      if (!entry.isDirectory || entry.name.startsWith(".") || skipped.includes(path)) continue;
      folders.push(`${path}/`);
    }
  }
  return folders.sort();
}

/** The layout table's folders as the README lists them (`undefined` if it has no table). */
export function tableFolders(readme: string): string[] | undefined {
  const table = findTable(readme);
  if (!table) return undefined;
  return table.rows.slice(2).map((line) => {
    const cell = line.split("|")[1]?.trim() ?? "";
    return cell.replace(/^`|`$/g, "");
  });
}

function findTable(readme: string): { start: number; end: number; rows: string[] } | undefined {
  const heading = readme.search(new RegExp(`^${HEADING}$`, "m"));
  if (heading < 0) return undefined;
  const lines = readme.slice(heading).split("\n");
  let offset = heading;
  let start = -1;
  const rows: string[] = [];
  for (const line of lines) {
    if (line.startsWith("|")) {
      if (start < 0) start = offset;
      rows.push(line);
    } else if (start >= 0 || (line.startsWith("#") && offset !== heading)) break;
    offset += line.length + 1;
  }
  if (start < 0) return undefined;
  return { start, end: start + rows.join("\n").length, rows };
}

/** The markdown table of `rows` (deno fmt aligns it). */
export function layoutTable(rows: readonly LayoutRow[]): string {
  const lines = ["| folder | what |", "| --- | --- |"];
  for (const [folder, what] of rows) {
    lines.push(`| \`${folder}\` | ${what.replaceAll("|", "\\|")} |`);
  }
  return lines.join("\n");
}

/**
 * `readme` with its layout table replaced by `table`.
 * @throws {TypeError} if the README has no `## Layout` table.
 */
export function withLayoutTable(readme: string, table: string): string {
  const found = findTable(readme);
  if (!found) {
    throw new TypeError(`Cannot write the layout table: the README has no "${HEADING}" table`);
  }
  return readme.slice(0, found.start) + table + readme.slice(found.end);
}

/** What is wrong with the table's rows against the tree's `folders`, one sentence each. */
export function layoutProblems(listed: readonly string[], folders: readonly string[]): string[] {
  const problems: string[] = [];
  for (const folder of folders) {
    if (!listed.includes(folder)) problems.push(`README's layout table has no row for ${folder}`);
  }
  for (const folder of listed) {
    if (!folders.includes(folder)) {
      problems.push(`README's layout table lists ${folder}, which is not a folder of the tree`);
    }
  }
  return problems;
}
