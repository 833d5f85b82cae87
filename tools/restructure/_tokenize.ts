/**
 * The tokenizer that `references()` and `exportsOf()` (source.ts) read sources with. A small
 * tokenizer, not a parser: it knows comments, strings, template literals and regular
 * expressions well enough never to read a specifier out of them, and gives each token its brace
 * depth. What the tokens say about other files is source.ts's.
 *
 * @module
 */

/** One token of a source. Comments are not tokens. */
export interface Token {
  kind: "name" | "string" | "template" | "regex" | "number" | "punct";
  /** The token's text; for a string, its value without the quotes. */
  value: string;
  /** Offset of the token's first character (a string's opening quote). */
  start: number;
  /** Offset just past the token's last character. */
  end: number;
  /** Brace depth at the token (template substitutions count as braces). */
  depth: number;
}

/** Keywords after which a `/` starts a regular expression, not a division. */
const BEFORE_REGEX = new Set([
  "return",
  "typeof",
  "instanceof",
  "in",
  "of",
  "new",
  "delete",
  "void",
  "throw",
  "case",
  "do",
  "else",
  "yield",
  "await",
]);

const NAME_START = /[A-Za-z_$\u0080-\uffff]/;
const NAME_PART = /[A-Za-z0-9_$\u0080-\uffff]/;
const PUNCT3 = ["===", "!==", "**=", "<<=", ">>=", ">>>", "...", "&&=", "||=", "??="];
const PUNCT2 = [
  "=>",
  "==",
  "!=",
  "<=",
  ">=",
  "&&",
  "||",
  "??",
  "?.",
  "++",
  "--",
  "+=",
  "-=",
  "*=",
  "/=",
  "%=",
  "&=",
  "|=",
  "^=",
  "**",
  "<<",
  ">>",
];

/**
 * The tokens of `text`.
 * @throws {SyntaxError} on an unterminated string, template, regular expression or comment.
 */
export function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  // One entry per open brace: true when it is a template's `${`.
  const braces: boolean[] = [];
  let i = 0;
  const fail = (what: string): never => {
    const line = text.slice(0, i).split("\n").length;
    throw new SyntaxError(`Cannot read the source: unterminated ${what} at line ${line}`);
  };
  const push = (kind: Token["kind"], value: string, start: number, end: number) => {
    tokens.push({ kind, value, start, end, depth: braces.length });
  };
  // Reads a template from i (just past "`" or the "}" closing a substitution) up to its end or
  // its next substitution.
  const template = (start: number) => {
    while (i < text.length) {
      const c = text[i];
      if (c === "\\") i += 2;
      else if (c === "`") {
        i++;
        push("template", text.slice(start, i), start, i);
        return;
      } else if (c === "$" && text[i + 1] === "{") {
        i += 2;
        push("template", text.slice(start, i), start, i);
        braces.push(true);
        return;
      } else i++;
    }
    fail("template literal");
  };
  const regexAllowed = () => {
    const last = tokens.at(-1);
    if (!last) return true;
    if (last.kind === "name") return BEFORE_REGEX.has(last.value);
    if (last.kind === "punct") return ![")", "]", "}"].includes(last.value);
    if (last.kind === "template") return last.value.endsWith("${");
    return false;
  };
  while (i < text.length) {
    const c = text[i];
    const start = i;
    if (c === " " || c === "\t" || c === "\n" || c === "\r" || c === "\ufeff") {
      i++;
    } else if (c === "/" && text[i + 1] === "/") {
      const end = text.indexOf("\n", i);
      i = end < 0 ? text.length : end;
    } else if (c === "/" && text[i + 1] === "*") {
      const end = text.indexOf("*/", i + 2);
      if (end < 0) fail("comment");
      i = end + 2;
    } else if (c === "#" && i === 0 && text[1] === "!") {
      const end = text.indexOf("\n");
      i = end < 0 ? text.length : end;
    } else if (c === '"' || c === "'") {
      i++;
      let value = "";
      while (i < text.length && text[i] !== c) {
        if (text[i] === "\n") fail("string");
        if (text[i] === "\\") {
          value += text.slice(i, i + 2);
          i += 2;
        } else value += text[i++];
      }
      if (i >= text.length) fail("string");
      i++;
      push("string", value, start, i);
    } else if (c === "`") {
      i++;
      template(start);
    } else if (c === "/" && regexAllowed()) {
      i++;
      let inClass = false;
      while (i < text.length) {
        const d = text[i];
        if (d === "\n") fail("regular expression");
        if (d === "\\") i += 2;
        else if (d === "[") (inClass = true, i++);
        else if (d === "]") (inClass = false, i++);
        else if (d === "/" && !inClass) break;
        else i++;
      }
      if (i >= text.length) fail("regular expression");
      i++;
      while (i < text.length && NAME_PART.test(text[i])) i++;
      push("regex", text.slice(start, i), start, i);
    } else if (NAME_START.test(c)) {
      while (i < text.length && NAME_PART.test(text[i])) i++;
      push("name", text.slice(start, i), start, i);
    } else if (/[0-9]/.test(c) || (c === "." && /[0-9]/.test(text[i + 1] ?? ""))) {
      while (i < text.length && /[0-9A-Za-z_.]/.test(text[i])) i++;
      push("number", text.slice(start, i), start, i);
    } else if (c === "{") {
      i++;
      push("punct", c, start, i);
      braces.push(false);
    } else if (c === "}") {
      if (braces.pop()) {
        i++;
        template(start);
      } else {
        i++;
        push("punct", c, start, i);
      }
    } else {
      const three = text.slice(i, i + 3);
      const two = text.slice(i, i + 2);
      const op = PUNCT3.includes(three) ? three : PUNCT2.includes(two) ? two : c;
      i += op.length;
      push("punct", op, start, i);
    }
  }
  return tokens;
}
