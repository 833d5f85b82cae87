/**
 * Names read from guest memory (`task->comm`, module, BPF program and map names, dentry names)
 * as strings that keep every byte.
 *
 * The mapping: the bytes are UTF-8; each byte that is not part of a well-formed UTF-8 sequence
 * becomes `\xNN` (two lowercase hex digits), and a backslash becomes `\\`. The mapping is one to
 * one: {@linkcode nameBytes} gives back the exact bytes, so a name is always a valid string that
 * JSON carries as it is, and a literal `\x41` in a name is told from an invalid byte.
 *
 * @module
 */

// ignoreBOM keeps a leading U+FEFF: it is one of the name's bytes, not a marker to drop.
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const encoder = new TextEncoder();

/** The length of the well-formed UTF-8 sequence at `i` of `bytes`, or 0 when there is none. */
function sequenceAt(bytes: Uint8Array, i: number): number {
  const lead = bytes[i];
  if (lead < 0x80) return 1;
  // Each lead byte's length and the range of its first continuation byte (Unicode table 3-7):
  // what excludes overlong forms, surrogates and code points past U+10FFFF.
  let length: number, low = 0x80, high = 0xbf;
  if (lead >= 0xc2 && lead <= 0xdf) length = 2;
  else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    if (lead === 0xe0) low = 0xa0;
    if (lead === 0xed) high = 0x9f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    if (lead === 0xf0) low = 0x90;
    if (lead === 0xf4) high = 0x8f;
  } else return 0;
  if (i + length > bytes.length) return 0;
  if (bytes[i + 1] < low || bytes[i + 1] > high) return 0;
  for (let k = 2; k < length; k++) {
    if (bytes[i + k] < 0x80 || bytes[i + k] > 0xbf) return 0;
  }
  return length;
}

/**
 * `bytes` as a name: UTF-8, each byte outside a well-formed sequence as `\xNN`, each backslash
 * as `\\`. The caller cuts the bytes at the terminating NUL, if any.
 */
export function decodeName(bytes: Uint8Array): string {
  // Names are mostly ASCII, and some are not names at all (a candidate's bytes a plan reads as
  // one to test it): told apart here, no decoder throws (a throw costs tens of microseconds).
  let i = 0;
  while (i < bytes.length && bytes[i] < 0x80) i++;
  if (i === bytes.length && i <= MAX_SPREAD) {
    return escape(String.fromCharCode.apply(null, bytes as unknown as number[]));
  }
  while (i < bytes.length) {
    const length = sequenceAt(bytes, i);
    if (!length) return decodeInvalid(bytes);
    i += length;
  }
  return escape(utf8.decode(bytes));
}

/** Longest name decoded by spreading its bytes as character codes (an argument each). */
const MAX_SPREAD = 256;

function escape(text: string): string {
  return text.includes("\\") ? text.replaceAll("\\", "\\\\") : text;
}

function decodeInvalid(bytes: Uint8Array): string {
  let text = "";
  let run = 0; // start of the current run of well-formed sequences
  let i = 0;
  while (i < bytes.length) {
    const length = sequenceAt(bytes, i);
    if (length) {
      i += length;
      continue;
    }
    text += utf8.decode(bytes.subarray(run, i)).replaceAll("\\", "\\\\");
    text += `\\x${bytes[i].toString(16).padStart(2, "0")}`;
    run = ++i;
  }
  return text + utf8.decode(bytes.subarray(run)).replaceAll("\\", "\\\\");
}

/**
 * The bytes a name from {@linkcode decodeName} was decoded from.
 * @throws {SyntaxError} naming the escape when `name` holds a backslash that is neither `\\` nor
 * `\xNN`.
 */
export function nameBytes(name: string): Uint8Array {
  if (!name.includes("\\")) return encoder.encode(name);
  const out: number[] = [];
  const pieces = name.split(/(\\\\|\\x[0-9a-f]{2})/);
  for (const [i, piece] of pieces.entries()) {
    if (i % 2 === 1) out.push(piece === "\\\\" ? 0x5c : parseInt(piece.slice(2), 16));
    else if (piece.includes("\\")) {
      throw new SyntaxError(`Cannot read name "${name}": "\\" starts no escape`);
    } else out.push(...encoder.encode(piece));
  }
  return new Uint8Array(out);
}

/**
 * Characters a terminal may act on or that hide what text says: controls (C0, DEL, C1), format
 * characters (bidi overrides such as U+202E, zero-width characters, soft hyphen), line and
 * paragraph separators, spaces other than U+0020 (the rest of Unicode's Zs), private-use and
 * unassigned code points, lone surrogates.
 */
export const UNSAFE_CHARACTER =
  /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Co}\p{Cn}\p{Cs}\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]/u;

/**
 * The hex of `name`'s bytes when its text alone does not show them plainly: it holds an invalid
 * byte or a backslash (escapes), or a character of {@linkcode UNSAFE_CHARACTER}; otherwise
 * undefined. This is what JSON answers carry as `commHex`, `nameHex` and `pathHex`.
 */
export function nameHex(name: string): string | undefined {
  if (!name.includes("\\") && !UNSAFE_CHARACTER.test(name)) return undefined;
  return Array.from(nameBytes(name), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * `{ [field]: nameHex(name) }`, or an empty object when the name is plain: spread it beside the
 * name (`{ comm, ...hexOf("commHex", comm) }`).
 */
export function hexOf<K extends string>(field: K, name: string): { [F in K]?: string } {
  const hex = nameHex(name);
  return (hex === undefined ? {} : { [field]: hex }) as { [F in K]?: string };
}
