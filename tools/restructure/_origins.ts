/**
 * Where the names a module exports are declared: {@linkcode Exported} follows `export ... from`,
 * `export *` and the re-export of an imported binding down to the file that declares each name,
 * so that a folder's `mod.ts` can export it from there.
 *
 * @module
 */

import { resolve } from "./check.ts";
import { type Exports, exportsOf, type ImportedName, references } from "./source.ts";
import type { Files } from "./surface.ts";

/** Where an exported name is declared: the file and its name there. */
export interface Origin {
  file: string;
  name: string;
  typeOnly: boolean;
}

/** Resolves exported names to their declarations, caching each file's exports. */
export class Exported {
  #files: Files;
  #exports = new Map<string, Exports>();

  constructor(files: Files) {
    this.#files = files;
  }

  exportsOf(file: string): Exports {
    let found = this.#exports.get(file);
    if (!found) {
      found = exportsOf(this.#files.read(file));
      this.#exports.set(file, found);
    }
    return found;
  }

  /** Forgets what is known of `file` (after it changed). */
  forget(file: string): void {
    this.#exports.delete(file);
  }

  /**
   * Where `name` exported by `file` is declared, following `export ... from`, `export *` and
   * `export { x }` of an imported `x`; `undefined` if `file` does not export it.
   */
  origin(file: string, name: string, seen = new Set<string>()): Origin | undefined {
    const key = `${file}#${name}`;
    if (seen.has(key) || !this.#files.exists(file)) return undefined;
    seen.add(key);
    const { names, stars } = this.exportsOf(file);
    const entry = names.find((n) => n.name === name);
    if (entry?.from) {
      const target = resolve(file, entry.from.specifier, this.#files.aliases);
      const origin = target === undefined ? undefined : this.origin(target, entry.from.name, seen);
      return origin ? { ...origin, typeOnly: origin.typeOnly || entry.typeOnly } : undefined;
    }
    if (entry?.binding !== undefined) {
      const imported = importedBinding(this.#files, file, entry.binding);
      if (imported) {
        const origin = this.origin(imported.target, imported.name.imported, seen);
        if (origin) {
          const typeOnly = origin.typeOnly || entry.typeOnly || imported.name.typeOnly;
          return { ...origin, typeOnly };
        }
      }
      return { file, name: entry.binding, typeOnly: entry.typeOnly };
    }
    if (entry) return { file, name, typeOnly: entry.typeOnly };
    for (const star of stars) {
      const target = resolve(file, star.specifier, this.#files.aliases);
      const origin = target === undefined ? undefined : this.origin(target, name, seen);
      if (origin) return { ...origin, typeOnly: origin.typeOnly || star.typeOnly };
    }
    return undefined;
  }
}

/** The import in `file` that binds `local`, if any. */
function importedBinding(
  files: Files,
  file: string,
  local: string,
): { target: string; name: ImportedName } | undefined {
  for (const reference of references(files.read(file))) {
    if (reference.kind !== "import") continue;
    const name = reference.names?.find((n) => n.local === local);
    const target = resolve(file, reference.specifier, files.aliases);
    if (name && target !== undefined) return { target, name };
  }
  return undefined;
}

/** Where the name `name` that `mod` (text `text`) exports is declared, if it exports it. */
export function exportedBy(
  mod: string,
  text: string,
  name: string,
  exported: Exported,
): Origin | undefined {
  const { names, stars } = exportsOf(text);
  const entry = names.find((n) => n.name === name);
  if (entry?.from) {
    const target = resolve(mod, entry.from.specifier);
    return target === undefined ? undefined : exported.origin(target, entry.from.name);
  }
  if (entry) return { file: mod, name, typeOnly: entry.typeOnly };
  for (const star of stars) {
    const target = resolve(mod, star.specifier);
    const origin = target === undefined ? undefined : exported.origin(target, name);
    if (origin) return origin;
  }
  return undefined;
}
