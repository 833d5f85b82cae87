/**
 * Guest-controlled text made safe for an operator's terminal: process names, module names,
 * finding messages. A name with a newline cannot forge a table row, nor an escape sequence drive
 * the terminal.
 *
 * @module
 */

/** Characters a terminal may act on: C0 and C1 controls, DEL, line separators, bidi controls. */
// deno-lint-ignore no-control-regex -- matching control characters is the point
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const NAMED: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/**
 * `text` safe to print on a terminal: each control character as an escape (`\x1b`, `\n`,
 * `\u202e`), and backslashes doubled so that escapes are unambiguous.
 */
export function printable(text: string): string {
  return text.replaceAll("\\", "\\\\").replace(UNSAFE, (char) => {
    if (NAMED[char]) return NAMED[char];
    const code = char.charCodeAt(0);
    return code <= 0xff
      ? `\\x${code.toString(16).padStart(2, "0")}`
      : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}

/** What JSON.stringify leaves unescaped in strings that a terminal may act on. */
const UNSAFE_IN_JSON = /[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * JSON with every character a terminal may act on as a `\uXXXX` escape (JSON.stringify escapes
 * C0 controls itself, but leaves DEL, C1 and bidi controls as they are).
 */
export function terminalJson(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(
    UNSAFE_IN_JSON,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}
