/**
 * A builder of synthetic BTF, for tests and for laying out synthetic memory images.
 *
 * @module
 */

import {
  BTF_MAGIC,
  BTF_VERSION,
  HEADER_SIZE,
  KIND_ARRAY,
  KIND_CONST,
  KIND_DATASEC,
  KIND_DECL_TAG,
  KIND_ENUM,
  KIND_ENUM64,
  KIND_FLOAT,
  KIND_FUNC,
  KIND_FUNC_PROTO,
  KIND_FWD,
  KIND_INT,
  KIND_PTR,
  KIND_RESTRICT,
  KIND_STRUCT,
  KIND_TYPE_TAG,
  KIND_TYPEDEF,
  KIND_UNION,
  KIND_VAR,
  KIND_VOLATILE,
} from "./_format.ts";
import type { BtfParam, BtfVarPlacement } from "./types.ts";

/** A struct or union member for {@linkcode BtfBuilder.addStruct}. */
export interface BtfMemberSpec {
  /** @default "" (anonymous) */
  name?: string;
  typeId: number;
  /** Offset from the start of the struct, in bits. */
  bitOffset: number;
  /** Width of a bitfield; any non-zero width encodes the struct with kind_flag. @default 0 */
  bitfieldSize?: number;
}

/** Header fields {@linkcode BtfBuilder.build} writes instead of the right ones. */
export interface BtfHeaderOverrides {
  magic?: number;
  version?: number;
  flags?: number;
  hdrLen?: number;
  typeOff?: number;
  typeLen?: number;
  strOff?: number;
  strLen?: number;
}

/**
 * Builds raw BTF type by type. Each `add*` method returns the new type's id; ids count from 1
 * in the order types are added, and may refer to types added later. Nothing is checked, so the
 * builder can also make malformed BTF.
 */
export class BtfBuilder {
  #words: number[] = [];
  #strings: number[] = [0];
  #offsets = new Map<string, number>([["", 0]]);
  #count = 0;

  /** Number of types added so far: the id of the last one. */
  get typeCount(): number {
    return this.#count;
  }

  /** Offset of `s` in the string section, adding it the first time. */
  string(s: string): number {
    let offset = this.#offsets.get(s);
    if (offset === undefined) {
      offset = this.#strings.length;
      this.#strings.push(...new TextEncoder().encode(s), 0);
      this.#offsets.set(s, offset);
    }
    return offset;
  }

  /** Adds one type record given as raw 32-bit words (name offset, info, size or type, ...). */
  addRaw(words: readonly number[]): number {
    this.#words.push(...words);
    return ++this.#count;
  }

  /** Adds an integer of `size` bytes. */
  addInt(
    name: string,
    size: number,
    options: {
      /** @default false */
      signed?: boolean;
      /** @default false */
      char?: boolean;
      /** @default false */
      bool?: boolean;
      /** @default size * 8 */
      bits?: number;
      /** @default 0 */
      bitOffset?: number;
    } = {},
  ): number {
    const encoding = (options.signed ? 1 : 0) | (options.char ? 2 : 0) | (options.bool ? 4 : 0);
    const data = encoding << 24 | (options.bitOffset ?? 0) << 16 | (options.bits ?? size * 8);
    return this.#add(KIND_INT, name, 0, size, [data]);
  }

  /** Adds a pointer to `typeId`. */
  addPtr(typeId: number): number {
    return this.#add(KIND_PTR, "", 0, typeId);
  }

  /** Adds an array of `count` elements of `typeId`. */
  addArray(
    typeId: number,
    count: number,
    options: {
      /** The index type; the parser does not check it. @default 0 */
      indexTypeId?: number;
    } = {},
  ): number {
    return this.#add(KIND_ARRAY, "", 0, 0, [typeId, options.indexTypeId ?? 0, count]);
  }

  /** Adds a struct (`""` for an anonymous one). */
  addStruct(name: string, layout: { size: number; members: readonly BtfMemberSpec[] }): number {
    return this.#addComposite(KIND_STRUCT, name, layout);
  }

  /** Adds a union (`""` for an anonymous one). */
  addUnion(name: string, layout: { size: number; members: readonly BtfMemberSpec[] }): number {
    return this.#addComposite(KIND_UNION, name, layout);
  }

  /** Adds an enum with 32-bit values. */
  addEnum(
    name: string,
    spec: {
      values: readonly (readonly [string, number])[];
      /** @default 4 */
      size?: number;
      /** @default false */
      signed?: boolean;
    },
  ): number {
    const tail = spec.values.flatMap(([value, n]) => [this.string(value), n]);
    return this.#add(KIND_ENUM, name, spec.values.length, spec.size ?? 4, tail, spec.signed);
  }

  /** Adds an enum with 64-bit values. */
  addEnum64(
    name: string,
    spec: {
      values: readonly (readonly [string, bigint])[];
      /** @default 8 */
      size?: number;
      /** @default false */
      signed?: boolean;
    },
  ): number {
    const tail = spec.values.flatMap(([value, n]) => [
      this.string(value),
      Number(BigInt.asUintN(32, n)),
      Number(BigInt.asUintN(32, n >> 32n)),
    ]);
    return this.#add(KIND_ENUM64, name, spec.values.length, spec.size ?? 8, tail, spec.signed);
  }

  /** Adds a forward declaration of a struct, or of a union. */
  addFwd(
    name: string,
    options: {
      /** @default false */
      union?: boolean;
    } = {},
  ): number {
    return this.#add(KIND_FWD, name, 0, 0, [], options.union);
  }

  /** Adds a typedef of `typeId`. */
  addTypedef(name: string, typeId: number): number {
    return this.#add(KIND_TYPEDEF, name, 0, typeId);
  }

  /** Adds `volatile typeId`. */
  addVolatile(typeId: number): number {
    return this.#add(KIND_VOLATILE, "", 0, typeId);
  }

  /** Adds `const typeId`. */
  addConst(typeId: number): number {
    return this.#add(KIND_CONST, "", 0, typeId);
  }

  /** Adds `restrict typeId`. */
  addRestrict(typeId: number): number {
    return this.#add(KIND_RESTRICT, "", 0, typeId);
  }

  /** Adds a type tag `name` on `typeId`. */
  addTypeTag(name: string, typeId: number): number {
    return this.#add(KIND_TYPE_TAG, name, 0, typeId);
  }

  /** Adds a function whose prototype is `protoId`. */
  addFunc(
    name: string,
    protoId: number,
    options: {
      /** 0 static, 1 global, 2 extern. @default 0 */
      linkage?: number;
    } = {},
  ): number {
    return this.#add(KIND_FUNC, name, options.linkage ?? 0, protoId);
  }

  /** Adds a function prototype. */
  addFuncProto(returnTypeId: number, params: readonly BtfParam[]): number {
    const tail = params.flatMap((p) => [this.string(p.name), p.typeId]);
    return this.#add(KIND_FUNC_PROTO, "", params.length, returnTypeId, tail);
  }

  /** Adds a variable of `typeId`. */
  addVar(
    name: string,
    typeId: number,
    options: {
      /** 0 static, 1 global, 2 extern. @default 0 */
      linkage?: number;
    } = {},
  ): number {
    return this.#add(KIND_VAR, name, 0, typeId, [options.linkage ?? 0]);
  }

  /** Adds a data section holding `vars`. */
  addDatasec(name: string, spec: { size: number; vars: readonly BtfVarPlacement[] }): number {
    const tail = spec.vars.flatMap((v) => [v.typeId, v.offset, v.size]);
    return this.#add(KIND_DATASEC, name, spec.vars.length, spec.size, tail);
  }

  /** Adds a floating-point type of `size` bytes. */
  addFloat(name: string, size: number): number {
    return this.#add(KIND_FLOAT, name, 0, size);
  }

  /** Adds a declaration tag on `typeId`. */
  addDeclTag(
    name: string,
    typeId: number,
    options: {
      /** The tagged member or parameter, -1 for the type itself. @default -1 */
      componentIndex?: number;
    } = {},
  ): number {
    return this.#add(KIND_DECL_TAG, name, 0, typeId, [options.componentIndex ?? -1]);
  }

  /**
   * The BTF bytes: a 24-byte header, the type section, then the string section. Header fields
   * in `overrides` are written as given; the sections stay where they are.
   */
  build(overrides: BtfHeaderOverrides = {}): Uint8Array {
    const types = new Uint8Array(new Uint32Array(this.#words).buffer);
    const out = new Uint8Array(HEADER_SIZE + types.length + this.#strings.length);
    out.set(types, HEADER_SIZE);
    out.set(this.#strings, HEADER_SIZE + types.length);
    const header = new DataView(out.buffer, 0, HEADER_SIZE);
    header.setUint16(0, overrides.magic ?? BTF_MAGIC, true);
    header.setUint8(2, overrides.version ?? BTF_VERSION);
    header.setUint8(3, overrides.flags ?? 0);
    header.setUint32(4, overrides.hdrLen ?? HEADER_SIZE, true);
    header.setUint32(8, overrides.typeOff ?? 0, true);
    header.setUint32(12, overrides.typeLen ?? types.length, true);
    header.setUint32(16, overrides.strOff ?? types.length, true);
    header.setUint32(20, overrides.strLen ?? this.#strings.length, true);
    return out;
  }

  #addComposite(
    kind: number,
    name: string,
    layout: { size: number; members: readonly BtfMemberSpec[] },
  ): number {
    const kindFlag = layout.members.some((m) => (m.bitfieldSize ?? 0) > 0);
    const tail = layout.members.flatMap((m) => [
      this.string(m.name ?? ""),
      m.typeId,
      kindFlag ? ((m.bitfieldSize ?? 0) << 24 | m.bitOffset) >>> 0 : m.bitOffset,
    ]);
    return this.#add(kind, name, layout.members.length, layout.size, tail, kindFlag);
  }

  #add(
    kind: number,
    name: string,
    vlen: number,
    sizeOrType: number,
    tail: readonly number[] = [],
    kindFlag = false,
  ): number {
    const info = ((kindFlag ? 1 << 31 : 0) | kind << 24 | vlen) >>> 0;
    return this.addRaw([this.string(name), info, sizeOrType, ...tail]);
  }
}
