/**
 * The typed descriptions {@linkcode Btf.type} returns, one per BTF kind.
 *
 * @module
 */

/** A BTF kind, spelled as `bpftool btf dump` spells it; `VOID` is type id 0. */
export type BtfKind =
  | "VOID"
  | "INT"
  | "PTR"
  | "ARRAY"
  | "STRUCT"
  | "UNION"
  | "ENUM"
  | "FWD"
  | "TYPEDEF"
  | "VOLATILE"
  | "CONST"
  | "RESTRICT"
  | "FUNC"
  | "FUNC_PROTO"
  | "VAR"
  | "DATASEC"
  | "FLOAT"
  | "DECL_TAG"
  | "TYPE_TAG"
  | "ENUM64";

/** What every description has. `name` is `""` for anonymous types. */
export interface BtfTypeBase<K extends BtfKind> {
  id: number;
  kind: K;
  name: string;
}

/** Type id 0: `void`. */
export type BtfVoid = BtfTypeBase<"VOID">;

/** An integer; `bits` of value starting `bitOffset` bits into its `size` bytes. */
export interface BtfInt extends BtfTypeBase<"INT"> {
  size: number;
  bits: number;
  bitOffset: number;
  signed: boolean;
  char: boolean;
  bool: boolean;
}

/** A pointer to `typeId`. */
export interface BtfPtr extends BtfTypeBase<"PTR"> {
  typeId: number;
}

/** An array of `count` elements of `typeId`, indexed by `indexTypeId`. */
export interface BtfArray extends BtfTypeBase<"ARRAY"> {
  typeId: number;
  indexTypeId: number;
  count: number;
}

/**
 * A struct or union member. `bitOffset` counts from the start of the containing type;
 * `bitfieldSize` is the width of a bitfield in a struct encoded with kind_flag, else 0.
 */
export interface BtfMember {
  name: string;
  typeId: number;
  bitOffset: number;
  bitfieldSize: number;
}

/** A struct or union of `size` bytes. */
export interface BtfStruct extends BtfTypeBase<"STRUCT" | "UNION"> {
  size: number;
  members: BtfMember[];
}

/** An enumerator of an {@linkcode BtfEnum}. */
export interface BtfEnumValue {
  name: string;
  value: number;
}

/** A 32-bit (or narrower) enum. */
export interface BtfEnum extends BtfTypeBase<"ENUM"> {
  size: number;
  signed: boolean;
  values: BtfEnumValue[];
}

/** An enumerator of an {@linkcode BtfEnum64}. */
export interface BtfEnum64Value {
  name: string;
  value: bigint;
}

/** A 64-bit enum. */
export interface BtfEnum64 extends BtfTypeBase<"ENUM64"> {
  size: number;
  signed: boolean;
  values: BtfEnum64Value[];
}

/** A forward declaration of a struct, or of a union when `union` is true. */
export interface BtfFwd extends BtfTypeBase<"FWD"> {
  union: boolean;
}

/** A typedef, a qualifier or a type tag of `typeId`. */
export interface BtfModifier
  extends BtfTypeBase<"TYPEDEF" | "VOLATILE" | "CONST" | "RESTRICT" | "TYPE_TAG"> {
  typeId: number;
}

/** A function whose prototype is `typeId`; `linkage` is 0 static, 1 global, 2 extern. */
export interface BtfFunc extends BtfTypeBase<"FUNC"> {
  typeId: number;
  linkage: number;
}

/** A parameter of a {@linkcode BtfFuncProto}; a last one of type 0 means `...`. */
export interface BtfParam {
  name: string;
  typeId: number;
}

/** A function prototype. */
export interface BtfFuncProto extends BtfTypeBase<"FUNC_PROTO"> {
  returnTypeId: number;
  params: BtfParam[];
}

/** A variable of `typeId`; `linkage` is 0 static, 1 global, 2 extern. */
export interface BtfVar extends BtfTypeBase<"VAR"> {
  typeId: number;
  linkage: number;
}

/** A variable placed in a {@linkcode BtfDatasec}. */
export interface BtfVarPlacement {
  typeId: number;
  offset: number;
  size: number;
}

/** A data section (such as `.data..percpu`) and the variables in it. */
export interface BtfDatasec extends BtfTypeBase<"DATASEC"> {
  size: number;
  vars: BtfVarPlacement[];
}

/** A floating-point type. */
export interface BtfFloat extends BtfTypeBase<"FLOAT"> {
  size: number;
}

/**
 * A declaration tag on `typeId`, or on its member or parameter `componentIndex` (-1 for the
 * type itself).
 */
export interface BtfDeclTag extends BtfTypeBase<"DECL_TAG"> {
  typeId: number;
  componentIndex: number;
}

/** Any type description; narrow it on `kind`. */
export type BtfType =
  | BtfVoid
  | BtfInt
  | BtfPtr
  | BtfArray
  | BtfStruct
  | BtfEnum
  | BtfEnum64
  | BtfFwd
  | BtfModifier
  | BtfFunc
  | BtfFuncProto
  | BtfVar
  | BtfDatasec
  | BtfFloat
  | BtfDeclTag;

/**
 * Where a member path lies in its outermost struct. `bitSize` is 0 unless the member is a
 * bitfield. For a bitfield, `bitOffset` and `bitSize` locate its bits and `offset`/`size` are
 * the bytes that hold them; otherwise `offset`/`size` are the member's bytes and `bitOffset` is
 * `offset * 8`. `typeId` is the member's declared type (modifiers not skipped).
 */
export interface BtfField {
  offset: number;
  size: number;
  bitOffset: number;
  bitSize: number;
  typeId: number;
}
