/**
 * Constants of the BTF wire format (the kernel's `include/uapi/linux/btf.h`), shared by the
 * parser, the reader and the builder.
 *
 * @module
 */

import type { BtfKind } from "./types.ts";

export const BTF_MAGIC = 0xeb9f;
export const BTF_VERSION = 1;
/** Size of the original `struct btf_header`; later kernels may append fields. */
export const HEADER_SIZE = 24;
/** 32-bit words of the common `struct btf_type` prefix of every type record. */
export const TYPE_HEADER_WORDS = 3;

export const KIND_INT = 1;
export const KIND_PTR = 2;
export const KIND_ARRAY = 3;
export const KIND_STRUCT = 4;
export const KIND_UNION = 5;
export const KIND_ENUM = 6;
export const KIND_FWD = 7;
export const KIND_TYPEDEF = 8;
export const KIND_VOLATILE = 9;
export const KIND_CONST = 10;
export const KIND_RESTRICT = 11;
export const KIND_FUNC = 12;
export const KIND_FUNC_PROTO = 13;
export const KIND_VAR = 14;
export const KIND_DATASEC = 15;
export const KIND_FLOAT = 16;
export const KIND_DECL_TAG = 17;
export const KIND_TYPE_TAG = 18;
export const KIND_ENUM64 = 19;
export const KIND_MAX = KIND_ENUM64;

/** Kind names by kind number; number 0 (BTF_KIND_UNKN) only ever names type id 0, void. */
export const KIND_NAMES: readonly BtfKind[] = [
  "VOID",
  "INT",
  "PTR",
  "ARRAY",
  "STRUCT",
  "UNION",
  "ENUM",
  "FWD",
  "TYPEDEF",
  "VOLATILE",
  "CONST",
  "RESTRICT",
  "FUNC",
  "FUNC_PROTO",
  "VAR",
  "DATASEC",
  "FLOAT",
  "DECL_TAG",
  "TYPE_TAG",
  "ENUM64",
];

/** Kind numbers by kind name. */
export const KIND_NUMBERS: Readonly<Record<BtfKind, number>> = Object.fromEntries(
  KIND_NAMES.map((name, kind) => [name, kind]),
) as Record<BtfKind, number>;

/** 32-bit words a kind's record carries after the common prefix, regardless of vlen. */
export const FIXED_WORDS: Uint8Array = new Uint8Array(KIND_MAX + 1);
FIXED_WORDS[KIND_INT] = 1;
FIXED_WORDS[KIND_ARRAY] = 3;
FIXED_WORDS[KIND_VAR] = 1;
FIXED_WORDS[KIND_DECL_TAG] = 1;

/** 32-bit words a kind's record carries per vlen entry (member, value, parameter, variable). */
export const VLEN_WORDS: Uint8Array = new Uint8Array(KIND_MAX + 1);
VLEN_WORDS[KIND_STRUCT] = 3;
VLEN_WORDS[KIND_UNION] = 3;
VLEN_WORDS[KIND_ENUM] = 2;
VLEN_WORDS[KIND_FUNC_PROTO] = 2;
VLEN_WORDS[KIND_DATASEC] = 3;
VLEN_WORDS[KIND_ENUM64] = 3;

/** Whether a kind only qualifies or renames the type it refers to. */
export function isModifier(kind: number): boolean {
  return kind === KIND_TYPEDEF || kind === KIND_VOLATILE || kind === KIND_CONST ||
    kind === KIND_RESTRICT || kind === KIND_TYPE_TAG;
}

/** Longest modifier chain, array nesting or anonymous member nesting followed (as the kernel). */
export const MAX_CHAIN = 32;

/** Size of a pointer in the guests ebpfmon reads (x86-64). */
export const POINTER_SIZE = 8;

/** Largest size a type may have: BTF sizes are 32-bit. */
export const MAX_SIZE = 0xffffffff;

/** The parsed tables a {@linkcode Btf} reads; every offset and id in them has been checked. */
export interface BtfTables {
  /** The type section as 32-bit little-endian words. */
  words: Uint32Array;
  /** Word index in `words` of each type's record, by type id; index 0 (void) is unused. */
  starts: Uint32Array;
  /** Kind number of each type, by type id; 0 for void. */
  kinds: Uint8Array;
  /** Each type id with its modifier chain skipped. */
  resolved: Uint32Array;
  /** The string section; its first and last bytes are NUL. */
  strings: Uint8Array;
  /** Number of types, not counting void. */
  count: number;
}
