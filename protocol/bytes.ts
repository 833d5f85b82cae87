/**
 * Byte arrays joined end to end, into one fresh buffer of their own (never a view into a shared
 * pool): a LOAD's log in chunks, frames built for a test, the fuzzers' inputs.
 *
 * @module
 */

/** `parts` one after another, in a new array. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
