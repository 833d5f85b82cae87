/**
 * Reading parsed BTF: type descriptions, lookups by name, sizes and member offsets.
 *
 * @module
 */

import { BtfError } from "./btf_error.ts";
import {
  type BtfTables,
  KIND_ARRAY,
  KIND_DATASEC,
  KIND_DECL_TAG,
  KIND_ENUM,
  KIND_ENUM64,
  KIND_FLOAT,
  KIND_FUNC,
  KIND_FUNC_PROTO,
  KIND_FWD,
  KIND_INT,
  KIND_NAMES,
  KIND_NUMBERS,
  KIND_PTR,
  KIND_STRUCT,
  KIND_UNION,
  KIND_VAR,
  MAX_CHAIN,
  MAX_SIZE,
  POINTER_SIZE,
} from "./_format.ts";
import { NameIndex, nameIs } from "./_name_index.ts";
import type { BtfField, BtfKind, BtfModifier, BtfStruct, BtfType } from "./types.ts";

const utf8 = new TextDecoder();
const encoder = new TextEncoder();

/** A member found by name, with its bit offset from the start of the struct searched. */
interface FoundMember {
  typeId: number;
  bitOffset: number;
  bitfieldSize: number;
  kindFlag: boolean;
}

/**
 * Parsed BTF. Type ids run from 0 (void) to {@linkcode Btf.typeCount}. Methods taking a type id
 * throw `RangeError` for an id outside that range, and {@linkcode BtfError} for BTF that cannot
 * answer (a missing name, a type without a size). Pointers are 8 bytes (x86-64).
 */
export class Btf {
  readonly #t: BtfTables;
  readonly #names = new Map<number, string>();
  #index: NameIndex | undefined;

  /** Made by {@linkcode parseBtf}, which checks the tables; not meant to be called directly. */
  constructor(tables: BtfTables) {
    this.#t = tables;
  }

  /** Number of types, not counting void (id 0); the largest type id. */
  get typeCount(): number {
    return this.#t.count;
  }

  /** The kind of type `id`. */
  kind(id: number): BtfKind {
    this.#check(id);
    return KIND_NAMES[this.#t.kinds[id]];
  }

  /** The name of type `id`, `""` when anonymous. */
  name(id: number): string {
    this.#check(id);
    return id === 0 ? "" : this.#string(this.#t.words[this.#t.starts[id]]);
  }

  /** A description of type `id`, with its names decoded. */
  type(id: number): BtfType {
    const name = this.name(id);
    if (id === 0) return { id, kind: "VOID", name };
    const { words, starts, kinds } = this.#t;
    const w = starts[id];
    const kind = kinds[id];
    const vlen = words[w + 1] & 0xffff;
    const kindFlag = words[w + 1] >>> 31 === 1;
    const third = words[w + 2];
    const first = w + 3;
    const each = <T>(step: number, make: (m: number) => T): T[] => {
      const out: T[] = [];
      for (let i = 0, m = first; i < vlen; i++, m += step) out.push(make(m));
      return out;
    };
    switch (kind) {
      case KIND_INT: {
        const data = words[first];
        const encoding = data >>> 24 & 0x0f;
        return {
          id,
          kind: "INT",
          name,
          size: third,
          bits: data & 0xff,
          bitOffset: data >>> 16 & 0xff,
          signed: (encoding & 1) !== 0,
          char: (encoding & 2) !== 0,
          bool: (encoding & 4) !== 0,
        };
      }
      case KIND_PTR:
        return { id, kind: "PTR", name, typeId: third };
      case KIND_ARRAY:
        return {
          id,
          kind: "ARRAY",
          name,
          typeId: words[first],
          indexTypeId: words[first + 1],
          count: words[first + 2],
        };
      case KIND_STRUCT:
      case KIND_UNION:
        return {
          id,
          kind: kind === KIND_STRUCT ? "STRUCT" : "UNION",
          name,
          size: third,
          members: each(3, (m) => ({
            name: this.#string(words[m]),
            typeId: words[m + 1],
            bitOffset: kindFlag ? words[m + 2] & 0xffffff : words[m + 2],
            bitfieldSize: kindFlag ? words[m + 2] >>> 24 : 0,
          })),
        };
      case KIND_ENUM:
        return {
          id,
          kind: "ENUM",
          name,
          size: third,
          signed: kindFlag,
          values: each(2, (m) => ({
            name: this.#string(words[m]),
            value: kindFlag ? words[m + 1] | 0 : words[m + 1],
          })),
        };
      case KIND_ENUM64:
        return {
          id,
          kind: "ENUM64",
          name,
          size: third,
          signed: kindFlag,
          values: each(3, (m) => {
            const value = BigInt(words[m + 2]) << 32n | BigInt(words[m + 1]);
            return {
              name: this.#string(words[m]),
              value: kindFlag ? BigInt.asIntN(64, value) : value,
            };
          }),
        };
      case KIND_FWD:
        return { id, kind: "FWD", name, union: kindFlag };
      case KIND_FUNC:
        return { id, kind: "FUNC", name, typeId: third, linkage: vlen };
      case KIND_FUNC_PROTO:
        return {
          id,
          kind: "FUNC_PROTO",
          name,
          returnTypeId: third,
          params: each(2, (m) => ({ name: this.#string(words[m]), typeId: words[m + 1] })),
        };
      case KIND_VAR:
        return { id, kind: "VAR", name, typeId: third, linkage: words[first] };
      case KIND_DATASEC:
        return {
          id,
          kind: "DATASEC",
          name,
          size: third,
          vars: each(3, (m) => ({ typeId: words[m], offset: words[m + 1], size: words[m + 2] })),
        };
      case KIND_FLOAT:
        return { id, kind: "FLOAT", name, size: third };
      case KIND_DECL_TAG:
        return { id, kind: "DECL_TAG", name, typeId: third, componentIndex: words[first] | 0 };
      default:
        return { id, kind: KIND_NAMES[kind] as BtfModifier["kind"], name, typeId: third };
    }
  }

  /**
   * Ids of the types named `name`, of kind `kind` if given, in id order. Anonymous types are
   * never found. The first call builds a name index, which later calls reuse.
   */
  find(name: string, kind?: BtfKind): number[] {
    const bytes = encoder.encode(name);
    if (bytes.length === 0 || bytes.includes(0)) return [];
    this.#index ??= new NameIndex(this.#t);
    return this.#index.find(bytes, kind === undefined ? -1 : KIND_NUMBERS[kind]);
  }

  /** `id` with typedefs, qualifiers and type tags skipped (chains were bounded at parse time). */
  resolve(id: number): number {
    this.#check(id);
    return this.#t.resolved[id];
  }

  /**
   * Size in bytes of type `id`, through modifiers and arrays.
   * @throws {BtfError} for a type without a size (void, FWD, FUNC, FUNC_PROTO, DECL_TAG), arrays
   * nested deeper than 32 levels, or a size beyond 32 bits.
   */
  sizeof(id: number): number {
    this.#check(id);
    const size = this.#size(id);
    if (typeof size === "string") {
      throw new BtfError(`Cannot compute the size of type ${id}: ${size}`);
    }
    return size;
  }

  /**
   * The struct named `name`, or failing that the union.
   * @throws {BtfError} when there is neither.
   */
  struct(name: string): BtfStruct {
    return this.type(this.#structId(name)) as BtfStruct;
  }

  /**
   * Locates the member at dotted `path` (`"tasks.next"`, `"uid.val"`, `"comm"`) in struct (or
   * union) `structName`. Members of anonymous structs and unions are found as in C. Every step
   * but the last must be a struct or union held by value: offsets never cross a pointer.
   * @throws {BtfError} naming the struct and the path when the struct or a member is missing,
   * a step is not a struct or union, or the member lies outside the struct.
   */
  field(structName: string, path: string): BtfField {
    const rootId = this.#structId(structName);
    const { words, starts, kinds, resolved } = this.#t;
    const problem = (what: string) =>
      new BtfError(`Cannot resolve field "${path}" in struct "${structName}": ${what}`);
    const steps = path.split(".");
    let typeId = rootId;
    let bitOffset = 0;
    let member: FoundMember | undefined;
    for (let i = 0; i < steps.length; i++) {
      const target = resolved[typeId];
      if (kinds[target] !== KIND_STRUCT && kinds[target] !== KIND_UNION) {
        const through = steps.slice(0, i).join(".");
        throw problem(
          `"${through}" is of kind ${KIND_NAMES[kinds[target]]}, not a struct or union`,
        );
      }
      member = this.#member(target, encoder.encode(steps[i]), new Set(), 0, problem);
      if (member === undefined) {
        throw new BtfError(`Cannot find field "${path}" in struct "${structName}"`);
      }
      bitOffset += member.bitOffset;
      typeId = member.typeId;
    }
    let bitSize = member!.bitfieldSize;
    const target = resolved[typeId];
    if (!member!.kindFlag && kinds[target] === KIND_INT) {
      // Without kind_flag, a bitfield is an INT whose bits do not fill its bytes.
      const data = words[starts[target] + 3];
      if ((data & 0xff) !== words[starts[target] + 2] * 8 || (data >>> 16 & 0xff) !== 0) {
        bitOffset += data >>> 16 & 0xff;
        bitSize = data & 0xff;
      }
    }
    let offset: number;
    let size: number;
    if (bitSize > 0) {
      offset = Math.floor(bitOffset / 8);
      size = Math.ceil((bitOffset + bitSize) / 8) - offset;
    } else {
      if (bitOffset % 8 !== 0) throw problem(`it starts at bit ${bitOffset}, not on a byte`);
      const typeSize = this.#size(typeId);
      if (typeof typeSize === "string") throw problem(typeSize);
      offset = bitOffset / 8;
      size = typeSize;
    }
    const rootSize = words[starts[rootId] + 2];
    if (offset + size > rootSize) {
      throw problem(`bytes ${offset} to ${offset + size} lie outside its ${rootSize} bytes`);
    }
    return { offset, size, bitOffset, bitSize, typeId };
  }

  #check(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id > this.#t.count) {
      throw new RangeError(`Cannot look up type ${id}: type ids run from 0 to ${this.#t.count}`);
    }
  }

  #string(offset: number): string {
    if (offset === 0) return "";
    let s = this.#names.get(offset);
    if (s === undefined) {
      const { strings } = this.#t;
      s = utf8.decode(strings.subarray(offset, strings.indexOf(0, offset)));
      this.#names.set(offset, s);
    }
    return s;
  }

  #structId(name: string): number {
    const id = this.find(name, "STRUCT")[0] ?? this.find(name, "UNION")[0];
    if (id === undefined) throw new BtfError(`Cannot find struct "${name}" in BTF`);
    return id;
  }

  /** Size of `id` in bytes, or why it has none. */
  #size(id: number): number | string {
    const { words, starts, kinds, resolved } = this.#t;
    let count = 1;
    let current = id;
    for (let depth = 0; depth <= MAX_CHAIN; depth++) {
      current = resolved[current];
      const w = starts[current];
      switch (kinds[current]) {
        case KIND_INT:
        case KIND_ENUM:
        case KIND_ENUM64:
        case KIND_STRUCT:
        case KIND_UNION:
        case KIND_DATASEC:
        case KIND_FLOAT:
          return checkedSize(count * words[w + 2]);
        case KIND_PTR:
          return checkedSize(count * POINTER_SIZE);
        case KIND_ARRAY:
          count *= words[w + 5];
          if (count > MAX_SIZE) return `its size exceeds ${MAX_SIZE} bytes`;
          current = words[w + 3];
          break;
        case KIND_VAR:
          current = words[w + 2];
          break;
        default:
          return `type ${current} (${KIND_NAMES[kinds[current]]}) has no size`;
      }
    }
    return `arrays and variables nest deeper than ${MAX_CHAIN} levels`;
  }

  /**
   * Finds member `name` of struct or union `id`, searching anonymous members depth-first as C
   * does. `seen` holds the types being or already searched, so none is searched twice.
   */
  #member(
    id: number,
    name: Uint8Array,
    seen: Set<number>,
    depth: number,
    problem: (what: string) => BtfError,
  ): FoundMember | undefined {
    const { words, starts, kinds, resolved, strings } = this.#t;
    seen.add(id);
    const w = starts[id];
    const vlen = words[w + 1] & 0xffff;
    const kindFlag = words[w + 1] >>> 31 === 1;
    for (let i = 0, m = w + 3; i < vlen; i++, m += 3) {
      const bitOffset = kindFlag ? words[m + 2] & 0xffffff : words[m + 2];
      const bitfieldSize = kindFlag ? words[m + 2] >>> 24 : 0;
      if (strings[words[m]] !== 0) {
        if (nameIs(strings, words[m], name)) {
          return { typeId: words[m + 1], bitOffset, bitfieldSize, kindFlag };
        }
        continue;
      }
      const inner = resolved[words[m + 1]];
      if ((kinds[inner] !== KIND_STRUCT && kinds[inner] !== KIND_UNION) || seen.has(inner)) {
        continue;
      }
      if (depth === MAX_CHAIN) {
        throw problem(`anonymous members nest deeper than ${MAX_CHAIN} levels`);
      }
      const found = this.#member(inner, name, seen, depth + 1, problem);
      if (found !== undefined) return { ...found, bitOffset: bitOffset + found.bitOffset };
    }
    return undefined;
  }
}

function checkedSize(size: number): number | string {
  return size > MAX_SIZE ? `its size exceeds ${MAX_SIZE} bytes` : size;
}
