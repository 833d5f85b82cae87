/**
 * What a JavaScript or TypeScript source says about other files: its module specifiers (with
 * where each string sits, so that it can be rewritten in place), the names each import takes,
 * and the names the file exports, read from the tokens of `_tokenize.ts`.
 *
 * @module
 */

import { type Token, tokenize } from "./_tokenize.ts";

/** How a file refers to another. */
export type ReferenceKind =
  /** `import ... from "x"`, `import "x"`, `import type ... from "x"`. */
  | "import"
  /** `export ... from "x"`. */
  | "export"
  /** `import("x")` as an expression. */
  | "dynamic"
  /** `typeof import("x")` and `import("x").Name` in a type. */
  | "type-query"
  /** `new URL("x", import.meta.url)`: a file to spawn or read, not a module this one loads. */
  | "url";

/** One name an import or export statement takes from its module. */
export interface ImportedName {
  /** The name in the module it comes from (`default` for a default import). */
  imported: string;
  /** The name it has here (for an export, the name it is exported as). */
  local: string;
  /** `type` on the name or on the whole statement. */
  typeOnly: boolean;
}

/** A reference from a source to another file, by a string literal. */
export interface Reference {
  kind: ReferenceKind;
  /** The specifier as written. */
  specifier: string;
  /** Offsets of the specifier's text inside its quotes. */
  start: number;
  end: number;
  /** 1-based line of the specifier. */
  line: number;
  /** The `type` of an import attribute (`with { type: "text" }`), if any. */
  attributeType?: string;
  /**
   * For an `import`/`export` statement or a type query: the names it takes, or `undefined` when
   * it takes a namespace (`* as ns`, `typeof import("x")`) or everything (`export *`).
   */
  names?: ImportedName[];
  /** What the reference takes: names, a namespace, everything (`export *`), or nothing. */
  form?: "named" | "namespace" | "star" | "bare";
  /** For an `import`/`export` statement: offsets of the whole statement, `;` included. */
  statementStart?: number;
  statementEnd?: number;
}

function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = text.indexOf("\n"); i >= 0 && i < offset; i = text.indexOf("\n", i + 1)) line++;
  return line;
}

/** Parses `{ a, b as c, type D }` from tokens[i] (the `{`); returns the names and the index past `}`. */
function braceNames(tokens: Token[], i: number, allType: boolean): [ImportedName[], number] {
  const names: ImportedName[] = [];
  i++;
  while (i < tokens.length && tokens[i].value !== "}") {
    let typeOnly = allType;
    if (
      tokens[i].value === "type" && tokens[i + 1]?.kind !== "punct" &&
      tokens[i + 1]?.value !== "as"
    ) {
      typeOnly = true;
      i++;
    } else if (
      tokens[i].value === "type" && tokens[i + 1]?.value === "as" &&
      tokens[i + 2]?.value === "as"
    ) {
      // `type as as x`: a type named "as", renamed.
      typeOnly = true;
      i++;
    }
    const imported = tokens[i].value;
    let local = imported;
    i++;
    if (tokens[i]?.value === "as") {
      local = tokens[i + 1].value;
      i += 2;
    }
    names.push({ imported, local, typeOnly });
    if (tokens[i]?.value === ",") i++;
  }
  return [names, i + 1];
}

/** The references of `text` to other files, in order. */
export function references(text: string): Reference[] {
  const tokens = tokenize(text);
  const found: Reference[] = [];
  const at = (i: number) => tokens[i]?.value;
  const ref = (kind: ReferenceKind, token: Token, extra: Partial<Reference> = {}): Reference => ({
    kind,
    specifier: token.value,
    start: token.start + 1,
    end: token.end - 1,
    line: lineAt(text, token.start),
    ...extra,
  });
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    const previous = tokens[i - 1];
    const afterDot = previous?.value === "." || previous?.value === "?.";
    if (t.kind !== "name" || afterDot) continue;
    if (t.value === "import" && at(i + 1) === "(" && tokens[i + 2]?.kind === "string") {
      const next = at(i + 3);
      if (next !== ")" && next !== ",") continue;
      if (previous?.value === "typeof" || at(i + 4) === ".") {
        // A type: `import("./x.ts").Name` takes Name, `typeof import("./x.ts")` everything.
        const name = at(i + 4) === "." && tokens[i + 5]?.kind === "name" ? at(i + 5) : undefined;
        found.push(ref("type-query", tokens[i + 2], {
          names: name ? [{ imported: name, local: name, typeOnly: true }] : undefined,
          form: name ? "named" : "namespace",
        }));
      } else found.push(ref("dynamic", tokens[i + 2]));
    } else if (
      t.value === "new" && at(i + 1) === "URL" && at(i + 2) === "(" &&
      tokens[i + 3]?.kind === "string" && at(i + 4) === "," && at(i + 5) === "import" &&
      at(i + 6) === "." && at(i + 7) === "meta" && at(i + 8) === "." && at(i + 9) === "url"
    ) {
      found.push(ref("url", tokens[i + 3]));
    } else if ((t.value === "import" || t.value === "export") && statementStart(tokens, i)) {
      const statement = importExport(tokens, i);
      if (!statement) continue;
      const [stringIndex, form, names] = statement;
      let end = stringIndex + 1;
      let attributeType: string | undefined;
      if ((at(end) === "with" || at(end) === "assert") && at(end + 1) === "{") {
        for (end += 2; end < tokens.length && at(end) !== "}"; end++) {
          if (at(end) === "type" && at(end + 1) === ":") attributeType = tokens[end + 2].value;
        }
        end++;
      }
      let statementEnd = tokens[end - 1].end;
      if (at(end) === ";") statementEnd = tokens[end].end;
      found.push(ref(t.value, tokens[stringIndex], {
        attributeType,
        names,
        form,
        statementStart: t.start,
        statementEnd,
      }));
      i = stringIndex;
    }
  }
  return found;
}

/** Whether tokens[i] (`import`/`export`) starts a statement. */
function statementStart(tokens: Token[], i: number): boolean {
  const previous = tokens[i - 1];
  if (!previous) return true;
  if (previous.kind === "punct") return [";", "}", "{"].includes(previous.value);
  if (previous.kind === "string" || previous.kind === "template") return true;
  // After an expression statement without a semicolon, e.g. `x = y\nimport ...`.
  return previous.kind === "name" || previous.kind === "number" || previous.kind === "regex";
}

/**
 * Reads an import or export declaration with a module specifier at tokens[i]: the index of its
 * string, its form and names; `undefined` when the statement names no module.
 */
function importExport(
  tokens: Token[],
  i: number,
): [number, Reference["form"], ImportedName[] | undefined] | undefined {
  const keyword = tokens[i].value;
  let j = i + 1;
  if (tokens[j]?.kind === "string") return keyword === "import" ? [j, "bare", []] : undefined;
  let allType = false;
  if (tokens[j]?.value === "type" && tokens[j + 1]?.value !== "from") {
    const next = tokens[j + 1];
    if (next && (next.value === "{" || next.value === "*" || next.kind === "name")) {
      allType = true;
      j++;
    }
  }
  const names: ImportedName[] = [];
  let form: Reference["form"] = "named";
  if (keyword === "import" && tokens[j]?.kind === "name" && tokens[j].value !== "from") {
    names.push({ imported: "default", local: tokens[j].value, typeOnly: allType });
    j++;
    if (tokens[j]?.value === ",") j++;
  } else if (
    keyword === "import" && tokens[j]?.value === "from" && tokens[j + 1]?.value === "from"
  ) {
    names.push({ imported: "default", local: "from", typeOnly: allType });
    j++;
  }
  if (tokens[j]?.value === "*") {
    if (tokens[j + 1]?.value === "as") {
      form = "namespace";
      j += 3;
    } else {
      form = "star";
      j++;
    }
  } else if (tokens[j]?.value === "{") {
    const [inBraces, next] = braceNames(tokens, j, allType);
    names.push(...inBraces);
    j = next;
  }
  if (tokens[j]?.value !== "from" || tokens[j + 1]?.kind !== "string") return undefined;
  return [j + 1, form, form === "named" ? names : undefined];
}

/** A name a module exports, and whether it is a type only. */
export interface ExportedName {
  name: string;
  /** `type` on the name or its statement, or a type declaration (`interface`, `type X =`). */
  typeOnly: boolean;
  /** For `export { x as name } from "y"`: the module (`y`) and the name there (`x`). */
  from?: { specifier: string; name: string };
  /** For `export { x as name }` (no module): the local binding `x`, declared or imported. */
  binding?: string;
}

/** What a module exports: its own names, and the modules whose exports it passes on whole. */
export interface Exports {
  names: ExportedName[];
  /** Specifiers of `export * from` (and `export type * from`, with `typeOnly`). */
  stars: { specifier: string; typeOnly: boolean }[];
}

/**
 * The top-level exports of `text`. A declaration with several declarators
 * (`export const a = 1, b = 2`) yields its first name only: a name it misses is reported by
 * whoever looks for it, never guessed.
 */
export function exportsOf(text: string): Exports {
  const tokens = tokenize(text);
  const names: ExportedName[] = [];
  // Top-level type declarations, exported or not (`interface A {}` then `export { A }`).
  const types = new Set<string>();
  tokens.forEach((t, i) => {
    if (t.depth !== 0 || t.kind !== "name" || tokens[i + 1]?.kind !== "name") return;
    if (t.value === "interface" || (t.value === "type" && tokens[i + 2]?.value !== "from")) {
      types.add(tokens[i + 1].value);
    }
  });
  const stars: Exports["stars"] = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (t.value !== "export" || t.kind !== "name" || t.depth !== 0) continue;
    if (tokens[i - 1] && !statementStart(tokens, i)) continue;
    let j = i + 1;
    let typeOnly = false;
    while (["declare", "async", "abstract"].includes(tokens[j]?.value)) j++;
    const word = tokens[j]?.value;
    if (word === "default") {
      names.push({ name: "default", typeOnly: false });
    } else if (
      word === "type" && tokens[j + 1]?.kind === "name" && tokens[j + 2]?.value !== "from"
    ) {
      names.push({ name: tokens[j + 1].value, typeOnly: true });
    } else if (word === "interface") {
      names.push({ name: tokens[j + 1].value, typeOnly: true });
    } else if (["function", "class", "enum", "namespace", "let", "var"].includes(word)) {
      const name = tokens[j + 1]?.value === "*" ? tokens[j + 2] : tokens[j + 1];
      names.push({ name: name.value, typeOnly: false });
    } else if (word === "const") {
      const name = tokens[j + 1]?.value === "enum" ? tokens[j + 2] : tokens[j + 1];
      if (name.kind === "name") names.push({ name: name.value, typeOnly: false });
    } else {
      if (word === "type") {
        typeOnly = true;
        j++;
      }
      if (tokens[j]?.value === "*") {
        if (tokens[j + 1]?.value === "as") {
          names.push({ name: tokens[j + 2].value, typeOnly });
        } else if (tokens[j + 1]?.value === "from") {
          stars.push({ specifier: tokens[j + 2].value, typeOnly });
        }
      } else if (tokens[j]?.value === "{") {
        const [inBraces, next] = braceNames(tokens, j, typeOnly);
        const source = tokens[next]?.value === "from" && tokens[next + 1]?.kind === "string"
          ? tokens[next + 1].value
          : undefined;
        for (const n of inBraces) {
          if (source !== undefined) {
            const from = { specifier: source, name: n.imported };
            names.push({ name: n.local, typeOnly: n.typeOnly, from });
          } else {
            const typeOnly = n.typeOnly || types.has(n.imported);
            names.push({ name: n.local, typeOnly, binding: n.imported });
          }
        }
      }
    }
  }
  return { names, stars };
}
