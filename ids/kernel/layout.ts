/**
 * Struct layouts resolved once from BTF into typed decoders.
 *
 * A view declares the fields it reads (`{ pid: sint("pid"), next: ptr("tasks.next") }`);
 * {@linkcode resolveLayout} looks each one up in the guest kernel's BTF at start-up, checks its
 * size, and fails with the struct and field named when the kernel lacks it. Reading a struct
 * then costs one cache lookup for the span of the declared fields, plus a fetch per missing
 * field range when that span is not cached whole. The declared fields are also exactly the
 * byte ranges a view needs, which is what a selective prefetch plan is made of.
 *
 * @module
 */

import type { Btf } from "../btf/mod.ts";
import {
  type AddressSpace,
  type GuestMemory,
  HEX_BYTES,
  type KAddr,
  type Pointer,
} from "../memory/mod.ts";
import { decodeName } from "./name.ts";

/** A field the layout cannot use. */
export class LayoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LayoutError";
  }
}

/** A structure resolved from BTF, or why this kernel lacks it. */
export type Optional<T> = { ok: T } | { reason: string };

/**
 * What `make` resolves, or, when the kernel lacks a structure or field it needs (a
 * `LayoutError` or a `BtfError`), the reason: a part of a view that a kernel may not have.
 */
export function optional<T>(make: () => T): Optional<T> {
  try {
    return { ok: make() };
  } catch (error) {
    if (error instanceof LayoutError || (error as Error).name === "BtfError") {
      return { reason: (error as Error).message };
    }
    throw error;
  }
}

type Kind = "uint" | "sint" | "ptr" | "ptr0" | "str" | "raw" | "hex" | "hexraw";

/** One declared field: its kind and the member path (or alternatives, first found wins). */
export interface FieldSpec<K extends Kind = Kind> {
  kind: K;
  paths: readonly string[];
}

/** An unsigned integer of any width up to 8 bytes (decoded to a number; 8-byte values above 2^53 lose precision). */
export const uint = (...paths: string[]): FieldSpec<"uint"> => ({ kind: "uint", paths });
/** A signed integer of 1, 2, 4 or 8 bytes. */
export const sint = (...paths: string[]): FieldSpec<"sint"> => ({ kind: "sint", paths });
/** A pointer, decoded to a {@linkcode Pointer}: follow it with `follow()`. */
export const ptr = (...paths: string[]): FieldSpec<"ptr"> => ({ kind: "ptr", paths });
/**
 * An array whose elements start with a pointer (list heads, hlist heads), decoded to the first
 * element's pointer; the whole array stays the field's bytes (what a plan copies).
 */
export const firstPtr = (...paths: string[]): FieldSpec<"ptr0"> => ({ kind: "ptr0", paths });
/** A NUL-terminated char array, decoded to a string as `decodeName()` (name.ts) maps bytes. */
export const str = (...paths: string[]): FieldSpec<"str"> => ({ kind: "str", paths });
/** Bytes of any size, decoded to a copy: arrays, addresses, integers wider than 53 bits. */
export const raw = (...paths: string[]): FieldSpec<"raw"> => ({ kind: "raw", paths });
/**
 * A little-endian integer of any size, decoded to hex text (`0x` and two digits per byte, most
 * significant first): bit sets wider than 53 bits, without a byte array per value.
 */
export const hexInt = (...paths: string[]): FieldSpec<"hex"> => ({ kind: "hex", paths });
/** Bytes of any size, decoded to hex text in memory order (two digits per byte): a tag, a hash. */
export const hexRaw = (...paths: string[]): FieldSpec<"hexraw"> => ({ kind: "hexraw", paths });

type Value<K extends Kind> = K extends "ptr" | "ptr0" ? Pointer
  : K extends "str" ? string
  : K extends "raw" ? Uint8Array
  : K extends "hex" | "hexraw" ? string
  : number;

/** The decoded form of a layout spec. */
export type Decoded<S extends Record<string, FieldSpec>> = { [F in keyof S]: Value<S[F]["kind"]> };

/** The decoded type of a resolved layout. */
export type Fields<L> = L extends StructLayout<infer T> ? T : never;

/** A resolved field: where it is and how big. */
export interface ResolvedField {
  name: string;
  member: string;
  offset: number;
  size: number;
  kind: Kind;
}

/** A struct's declared fields, resolved against one kernel's BTF. */
export interface StructLayout<T> {
  readonly struct: string;
  /** The struct's full size in this kernel. */
  readonly size: number;
  readonly fields: readonly ResolvedField[];
  /** First byte and one past the last byte of the declared fields, from the struct's start. */
  readonly start: number;
  readonly end: number;
  /** The fields' byte ranges relative to `start`. */
  readonly ranges: readonly { off: number; len: number }[];
  /**
   * The same, those at most {@linkcode GATHER_GAP} apart taken as one (a plan copies them as one
   * record): what {@linkcode peekStruct} gathers first, one lookup each.
   */
  readonly gather: readonly { off: number; len: number }[];
  /**
   * Decodes the fields from `view`, which holds bytes [start, end) of the struct from its byte
   * `at` on, reading pointers as `space` numbers them (the guest's).
   */
  decode(view: DataView, at: number, space: AddressSpace): T;
}

/**
 * The NUL-terminated name in the `size` bytes at `at` of `view` (all of them without a NUL), as
 * {@linkcode decodeName} maps bytes to text. Kernel names are short and nearly always ASCII
 * without a backslash, which is decoded here: a TextDecoder call costs more than the whole of a
 * short name.
 */
function decodeString(view: DataView, at: number, size: number): string {
  let text = "";
  for (let i = 0; i < size; i++) {
    const byte = view.getUint8(at + i);
    if (byte === 0) return text;
    if (byte >= 0x80 || byte === BACKSLASH) {
      const bytes = new Uint8Array(view.buffer, view.byteOffset + at, size);
      const nul = bytes.indexOf(0, i);
      return decodeName(nul < 0 ? bytes : bytes.subarray(0, nul));
    }
    text += String.fromCharCode(byte);
  }
  return text;
}

const BACKSLASH = 0x5c;

/**
 * Resolves `spec` against `struct` in `btf`.
 * @throws {LayoutError} naming the struct and field when a field is missing or has a size the
 * kind cannot decode.
 */
export function resolveLayout<S extends Record<string, FieldSpec>>(
  btf: Btf,
  struct: string,
  spec: S,
): StructLayout<Decoded<S>> {
  let size: number;
  try {
    size = btf.sizeof(btf.struct(struct).id);
  } catch (error) {
    throw new LayoutError(`Cannot resolve struct "${struct}": ${(error as Error).message}`);
  }
  const fields: ResolvedField[] = [];
  for (const [name, field] of Object.entries(spec)) {
    let found: ResolvedField | undefined;
    const problems: string[] = [];
    for (const member of field.paths) {
      try {
        const f = btf.field(struct, member);
        if (f.bitSize) throw new LayoutError(`field "${member}" is a bitfield`);
        found = { name, member, offset: f.offset, size: f.size, kind: field.kind };
        break;
      } catch (error) {
        problems.push((error as Error).message);
      }
    }
    if (!found) {
      throw new LayoutError(
        `Cannot resolve "${name}" of struct "${struct}": ${problems.join("; ")}`,
      );
    }
    const ok = field.kind === "ptr"
      ? found.size === 8
      : field.kind === "ptr0"
      ? found.size >= 8 && found.size % 8 === 0
      : ["str", "raw", "hex", "hexraw"].includes(field.kind)
      ? found.size > 0
      : [1, 2, 4, 8].includes(found.size);
    if (!ok) {
      throw new LayoutError(
        `Cannot use field "${found.member}" of struct "${struct}" as ${field.kind}: it is ${found.size} bytes`,
      );
    }
    fields.push(found);
  }
  const start = Math.min(...fields.map((f) => f.offset));
  const end = Math.max(...fields.map((f) => f.offset + f.size));
  const ranges = fields.map((f) => ({ off: f.offset - start, len: f.size }));
  const gather = joinRanges(ranges);
  return {
    struct,
    size,
    fields,
    start,
    end,
    ranges,
    gather,
    decode: compileDecoder<Decoded<S>>(fields, start),
  };
}

/**
 * A layout of `size` bytes that BTF describes as no struct, for a plan node: the bytes a `char *`
 * points to (a name without a length beside it), copied whole as the one raw field `bytes`.
 */
export function bytesLayout(name: string, size: number): StructLayout<{ bytes: Uint8Array }> {
  if (!Number.isSafeInteger(size) || size <= 0) {
    throw new LayoutError(`Cannot lay out ${size} bytes of "${name}"`);
  }
  const fields: ResolvedField[] = [{ name: "bytes", member: name, offset: 0, size, kind: "raw" }];
  return {
    struct: name,
    size,
    fields,
    start: 0,
    end: size,
    ranges: [{ off: 0, len: size }],
    gather: [{ off: 0, len: size }],
    decode: compileDecoder(fields, 0),
  };
}

/**
 * The offset of member `path` in `struct`, for container_of arithmetic.
 * @throws {LayoutError} naming the struct and member when the kernel lacks it.
 */
export function offsetOf(btf: Btf, struct: string, path: string): number {
  try {
    return btf.field(struct, path).offset;
  } catch (error) {
    throw new LayoutError(
      `Cannot resolve "${path}" of struct "${struct}": ${(error as Error).message}`,
    );
  }
}

/** A copy of `size` bytes at `at` of `view`. */
function copyBytes(view: DataView, at: number, size: number): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset + at, size).slice();
}

/** The little-endian integer of `size` bytes at `at` of `view`, as `0x` and hex digits. */
function hexLittleEndian(view: DataView, at: number, size: number): string {
  let text = "0x";
  for (let i = size - 1; i >= 0; i--) text += HEX_BYTES[view.getUint8(at + i)];
  return text;
}

/** The `size` bytes at `at` of `view` as hex digits, in memory order. */
function hexMemoryOrder(view: DataView, at: number, size: number): string {
  let text = "";
  for (let i = 0; i < size; i++) text += HEX_BYTES[view.getUint8(at + i)];
  return text;
}

/** The expression that decodes field `f` from DataView `v` at `at` plus its offset. */
function fieldExpression(f: ResolvedField, start: number): string {
  const rel = f.offset - start;
  if (!Number.isSafeInteger(rel) || rel < 0 || !Number.isSafeInteger(f.size) || f.size <= 0) {
    throw new LayoutError(`Cannot decode field "${f.member}" at ${rel} of ${f.size} bytes`);
  }
  const at = `at + ${rel}`;
  switch (f.kind) {
    case "ptr":
    case "ptr0":
      return `s.pointerAt(v, ${at})`;
    case "str":
      return `decodeString(v, ${at}, ${f.size})`;
    case "raw":
      return `copyBytes(v, ${at}, ${f.size})`;
    case "hex":
      return `hexLittleEndian(v, ${at}, ${f.size})`;
    case "hexraw":
      return `hexMemoryOrder(v, ${at}, ${f.size})`;
    case "uint":
      return [
        `v.getUint8(${at})`,
        `v.getUint16(${at}, true)`,
        `v.getUint32(${at}, true)`,
        `u64(v, ${at})`,
      ][Math.log2(f.size)];
    case "sint":
      return [
        `v.getInt8(${at})`,
        `v.getInt16(${at}, true)`,
        `v.getInt32(${at}, true)`,
        `Number(v.getBigInt64(${at}, true))`,
      ][Math.log2(f.size)];
  }
}

/**
 * The decoder of a layout, compiled once per layout and kernel: one function that reads every
 * field at its constant offset into an object literal of one shape. Views decode hundreds of
 * thousands of structs per snapshot, and a loop over per-field closures costs several times
 * more. What is compiled comes from the layout's own field names (the source's literals,
 * quoted) and offsets checked to be integers, never from guest bytes. Pointers are read by the
 * address space passed in (`s`), the reading guest's: guests of one kernel share the decoder,
 * not their addresses.
 */
function compileDecoder<T>(
  fields: readonly ResolvedField[],
  start: number,
): (view: DataView, at: number, space: AddressSpace) => T {
  const body = fields.map((f) => `${JSON.stringify(f.name)}: ${fieldExpression(f, start)}`);
  return new Function(
    "decodeString",
    "copyBytes",
    "hexLittleEndian",
    "hexMemoryOrder",
    "u64",
    `"use strict"; return (v, at, s) => ({ ${body.join(", ")} });`,
  )(decodeString, copyBytes, hexLittleEndian, hexMemoryOrder, u64);
}

/**
 * The 8-byte unsigned integer at `at` of `view` (exact below 2^53). One function for every
 * decoder's 8-byte fields: written out in each decoder, `low + high * 2^32` of a field whose
 * high half is mostly 0 made V8's optimized decoders of the task and BPF aux layouts bail out
 * again and again (about 50 times in 400 checks and lists) and run unoptimized in between.
 */
function u64(view: DataView, at: number): number {
  const high = view.getUint32(at + 4, true);
  const low = view.getUint32(at, true);
  return high === 0 ? low : high * 4294967296 + low;
}

const scratch = new WeakMap<StructLayout<unknown>, Uint8Array>();

function scratchOf(layout: StructLayout<unknown>): Uint8Array {
  let buffer = scratch.get(layout);
  if (!buffer) {
    buffer = new Uint8Array(layout.end - layout.start);
    scratch.set(layout, buffer);
  }
  return buffer;
}

/**
 * Fields closer than this are gathered as one range: what a plan's fields-only copy merges
 * (ids/kernel/plan.ts), so the gap between them is cached too.
 */
export const GATHER_GAP = 64;

/** `ranges` (sorted, or not) with those at most GATHER_GAP apart joined. */
function joinRanges(
  ranges: readonly { off: number; len: number }[],
): { off: number; len: number }[] {
  const out: { off: number; len: number }[] = [];
  for (const r of [...ranges].sort((a, b) => a.off - b.off)) {
    const last = out[out.length - 1];
    if (last && r.off - (last.off + last.len) <= GATHER_GAP) {
      last.len = Math.max(last.len, r.off + r.len - last.off);
    } else out.push({ ...r });
  }
  return out;
}

/**
 * The declared fields of the struct at `addr` if the memory at hand holds them all (no I/O),
 * else undefined: one cache lookup when the fields' span is cached whole or field by field
 * (after a selective prefetch). The way a walk over a prefetched snapshot reads without
 * awaiting: `peekStruct(mem, at, layout) ?? await readStruct(mem, at, layout)`.
 */
export function peekStruct<T>(
  mem: GuestMemory,
  addr: KAddr,
  layout: StructLayout<T>,
): T | undefined {
  const span = layout.end - layout.start;
  const first = addr + layout.start;
  const inPlace = mem.peekSpan(first, span);
  if (inPlace) {
    return layout.decode(inPlace.view, inPlace.base + first - inPlace.start, mem.space);
  }
  // The fields are decoded before anything else runs, so one scratch buffer per layout serves.
  // The fields close together are one range each; when a gap between them is not cached (a
  // plan that copied them apart), field by field.
  const scratch = scratchOf(layout);
  const bytes = mem.peekRanges(first, scratch, layout.gather) ??
    (layout.gather.length < layout.ranges.length
      ? mem.peekRanges(first, scratch, layout.ranges)
      : undefined);
  return bytes && layout.decode(new DataView(bytes.buffer, bytes.byteOffset, span), 0, mem.space);
}

/**
 * Reads the declared fields of the struct at `addr`: from the memory at hand when it holds them
 * ({@linkcode peekStruct}); otherwise each field range is read on its own, fetching what is
 * missing.
 * @throws {GuestReadError} when the guest cannot provide a field.
 */
export async function readStruct<T>(
  mem: GuestMemory,
  addr: KAddr,
  layout: StructLayout<T>,
): Promise<T> {
  const cached = peekStruct(mem, addr, layout);
  if (cached) return cached;
  const span = layout.end - layout.start;
  const bytes = new Uint8Array(span);
  for (const f of layout.fields) {
    const field = mem.peek(addr + f.offset, f.size) ?? await mem.read(addr + f.offset, f.size);
    bytes.set(field, f.offset - layout.start);
  }
  return layout.decode(new DataView(bytes.buffer, bytes.byteOffset, span), 0, mem.space);
}
