/**
 * An index of type names, hashed straight from the string section's bytes so that building
 * it decodes no strings.
 *
 * @module
 */

import type { BtfTables } from "./_format.ts";

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** Open-addressing hash table from name hash to type ids, in typed arrays. */
export class NameIndex {
  readonly #t: BtfTables;
  /** Type ids by slot, 0 for an empty slot; a name's ids follow its hash's probe sequence. */
  readonly #slots: Uint32Array;
  /** The hash of each type's name, by type id. */
  readonly #hashes: Uint32Array;
  readonly #mask: number;

  constructor(tables: BtfTables) {
    const { words, starts, strings, count } = tables;
    this.#t = tables;
    // At most half full, so probe sequences stay short.
    let capacity = 16;
    while (capacity < count * 2) capacity *= 2;
    this.#slots = new Uint32Array(capacity);
    this.#hashes = new Uint32Array(count + 1);
    this.#mask = capacity - 1;
    for (let id = 1; id <= count; id++) {
      let at = words[starts[id]];
      if (strings[at] === 0) continue;
      let h = FNV_OFFSET;
      for (; strings[at] !== 0; at++) h = Math.imul(h ^ strings[at], FNV_PRIME);
      h >>>= 0;
      this.#hashes[id] = h;
      let slot = h & this.#mask;
      while (this.#slots[slot] !== 0) slot = (slot + 1) & this.#mask;
      this.#slots[slot] = id;
    }
  }

  /** Ids of the types named `name` (UTF-8, non-empty) and of kind number `kind` (-1: any). */
  find(name: Uint8Array, kind: number): number[] {
    const { words, starts, kinds, strings } = this.#t;
    let h = FNV_OFFSET;
    for (const byte of name) h = Math.imul(h ^ byte, FNV_PRIME);
    h >>>= 0;
    const found: number[] = [];
    for (
      let slot = h & this.#mask, id;
      (id = this.#slots[slot]) !== 0;
      slot = (slot + 1) & this.#mask
    ) {
      if (this.#hashes[id] !== h || (kind !== -1 && kinds[id] !== kind)) continue;
      if (nameIs(strings, words[starts[id]], name)) found.push(id);
    }
    // Ids with one hash were inserted in id order along one probe sequence, so this is sorted.
    return found;
  }
}

/** Whether the NUL-terminated string at `offset` in `strings` is `name`. */
export function nameIs(strings: Uint8Array, offset: number, name: Uint8Array): boolean {
  for (let i = 0; i < name.length; i++) {
    if (strings[offset + i] !== name[i]) return false;
  }
  return strings[offset + name.length] === 0;
}
