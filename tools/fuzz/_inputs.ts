/**
 * What the fuzz targets share: mutations of valid inputs, cheap noise, common arbitraries, and
 * this machine's kernel types (from its BTF) with a plan built from them.
 *
 * @module
 */

import fc from "fast-check";
import { concatBytes, encodePlan } from "../../protocol/mod.ts";
import { parseBtf } from "../../ids/btf/mod.ts";
import { type KernelTypes, planTasks, resolveKernelTypes } from "../../ids/linux/mod.ts";
import { PlanBuilder } from "../../ids/kernel/mod.ts";

/** One change to a valid input; `at` wraps around the input's length. */
export type Mutation =
  | { kind: "flip"; at: number; xor: number }
  | { kind: "u32"; at: number; value: number }
  | { kind: "truncate"; at: number }
  | { kind: "insert"; at: number; bytes: Uint8Array }
  | { kind: "repeat"; at: number; len: number };

const flip = fc.record({
  kind: fc.constant("flip" as const),
  at: fc.nat(),
  xor: fc.integer({ min: 1, max: 255 }),
});
const overwrite = fc.record({
  kind: fc.constant("u32" as const),
  at: fc.nat(),
  value: fc.oneof(
    fc.integer({ min: 0, max: 64 }),
    fc.constantFrom(0xffff_ffff, 0x8000_0000, 0x7fff_ffff, 1 << 20, 1 << 24, 16 << 20),
    fc.nat({ max: 0xffff_ffff }),
  ),
});

/** Mutations that keep the length: bytes flipped, u32 fields (lengths, counts) rewritten. */
export const inPlace: fc.Arbitrary<Mutation> = fc.oneof(flip, overwrite);

/** Any mutation: in place, or cut short, or with bytes inserted or repeated. */
export const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  flip,
  overwrite,
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant("insert" as const),
    at: fc.nat(),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }),
  }),
  fc.record({
    kind: fc.constant("repeat" as const),
    at: fc.nat(),
    len: fc.integer({ min: 1, max: 64 }),
  }),
);

/** Applies `mutations` to a copy of `bytes`; positions wrap around its length. */
export function mutate(bytes: Uint8Array, mutations: readonly Mutation[]): Uint8Array {
  let out: Uint8Array<ArrayBuffer> = Uint8Array.from(bytes);
  for (const m of mutations) {
    const at = out.length === 0 ? 0 : m.at % (out.length + 1);
    if (m.kind === "flip" && at < out.length) out[at] ^= m.xor;
    if (m.kind === "u32" && at + 4 <= out.length) {
      new DataView(out.buffer, out.byteOffset).setUint32(at, m.value >>> 0, true);
    }
    if (m.kind === "truncate") out = out.slice(0, at);
    if (m.kind === "insert") out = concatBytes([out.subarray(0, at), m.bytes, out.subarray(at)]);
    if (m.kind === "repeat") {
      const piece = out.subarray(at, at + m.len);
      out = concatBytes([out.subarray(0, at), piece, out.subarray(at)]);
    }
  }
  return out;
}

/** `valid`, mutated a few times (sometimes not at all). */
export function mutated(valid: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  return fc.tuple(valid, fc.array(mutation, { maxLength: 4 })).map(([bytes, ms]) =>
    mutate(bytes, ms)
  );
}

/** Bytes from a small xorshift generator: large inputs without a generator call per byte. */
export function noise(seed: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed | 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Any u32. */
export const u32: fc.Arbitrary<number> = fc.nat({ max: 0xffff_ffff });
/** Any u64. */
export const u64: fc.Arbitrary<bigint> = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });

/** `make()`, called once, the first time it is needed. */
export function lazy<T>(make: () => T): () => T {
  let value: { v: T } | undefined;
  return () => (value ??= { v: make() }).v;
}

/** This machine's kernel types, from `/sys/kernel/btf/vmlinux` (read once). */
export const kernelTypes: () => KernelTypes = lazy(() =>
  resolveKernelTypes(parseBtf(Deno.readFileSync("/sys/kernel/btf/vmlinux")))
);

/** A valid encoded plan: the process list's walk from a plausible init_task. */
export const planBytes: () => Uint8Array = lazy(() => {
  const b = new PlanBuilder("selective");
  planTasks(b, kernelTypes(), 0x7f00_1000_0000);
  return encodePlan(b.build());
});
