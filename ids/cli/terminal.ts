/**
 * Guest-controlled text made safe for an operator's terminal: process names, module names,
 * finding messages. A name with a newline cannot forge a table row, nor an escape sequence drive
 * the terminal, nor a bidi override or a zero-width character hide what a name says.
 *
 * Tables show each such character as an escape: `\n`, `\r`, `\t`, `\xNN` up to U+00FF, `\uNNNN`
 * and `\u{NNNNN}` beyond. {@linkcode printable} doubles backslashes too, so that its escapes are
 * unambiguous. Names from guest memory arrive already in that escaped form (`\xNN` for a byte
 * that is not UTF-8, `\\` for a backslash: see `kernel/name.ts`): {@linkcode printableName}
 * escapes only their characters, and JSON answers carry their exact bytes in hex (`commHex`).
 *
 * @module
 */

import { UNSAFE_CHARACTER } from "../kernel/mod.ts";

const UNSAFE = new RegExp(UNSAFE_CHARACTER.source, "gu");
const NAMED: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

function escape(char: string): string {
  if (NAMED[char]) return NAMED[char];
  const code = char.codePointAt(0)!;
  return code <= 0xff
    ? `\\x${code.toString(16).padStart(2, "0")}`
    : code <= 0xffff
    ? `\\u${code.toString(16).padStart(4, "0")}`
    : `\\u{${code.toString(16)}}`;
}

/**
 * `text` safe to print on a terminal: each control, format or other invisible character (see
 * `UNSAFE_CHARACTER` in `kernel/name.ts`) as an escape (`\x1b`, `\n`, `\u202e`), and
 * backslashes doubled so that escapes are unambiguous.
 */
export function printable(text: string): string {
  return printableName(text.replaceAll("\\", "\\\\"));
}

/**
 * A name decoded from guest memory (`decodeName()` of `kernel/name.ts`: its backslashes are
 * already escapes) safe to print on a terminal: each control, format or other invisible
 * character as an escape, as {@linkcode printable} does.
 */
export function printableName(name: string): string {
  return name.replace(UNSAFE, escape);
}

/**
 * JSON with every character a terminal may act on as a `\uXXXX` escape: JSON.stringify escapes C0
 * controls itself (and the JSON's own `\n` lay it out), but leaves DEL, C1, bidi and zero-width
 * characters as they are.
 */
export function terminalJson(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(UNSAFE, (char) => {
    if (char.charCodeAt(0) < 0x20) return char;
    return Array.from(
      { length: char.length },
      (_, i) => `\\u${char.charCodeAt(i).toString(16).padStart(4, "0")}`,
    ).join("");
  });
}
