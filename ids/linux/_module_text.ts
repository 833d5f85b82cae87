/**
 * Where a module's text and its memory lie, in either kernel's layout: the `mod_mem_type`
 * regions of `mem[]` (Linux 6.4+), or `core_layout` and `init_layout` (Linux 6.1). The ranges
 * tell which module holds a code address (`address_owner.ts`).
 *
 * @module
 */

import type { Btf } from "../btf/mod.ts";
import type { GuestMemory, KAddr, Pointer } from "../memory/mod.ts";
import { LayoutError, ptr, readStruct, resolveLayout, uint } from "../kernel/mod.ts";
import type { ModuleTypes } from "./module_types.ts";
import { type AddressRange, hex64 } from "./address_owner.ts";

/** What a module's text and memory are, in one kernel or the other. */
export function resolveText(btf: Btf, types: ModuleTypes) {
  if (types.memory.kind === "mem") {
    const id = btf.find("mod_mem_type", "ENUM")[0];
    const type = id === undefined ? undefined : btf.type(id);
    if (type?.kind !== "ENUM") throw new LayoutError(`Cannot find enum "mod_mem_type" in BTF`);
    const value = (name: string) => {
      const v = type.values.find((e) => e.name === name)?.value;
      if (v === undefined) throw new LayoutError(`enum "mod_mem_type" has no "${name}"`);
      return v;
    };
    return {
      kind: "mem" as const,
      memory: types.memory,
      text: [value("MOD_TEXT"), value("MOD_INIT_TEXT")],
    };
  }
  return {
    kind: "layout" as const,
    layout: resolveLayout(btf, "module", {
      coreBase: ptr("core_layout.base"),
      coreSize: uint("core_layout.size"),
      coreText: uint("core_layout.text_size"),
      initBase: ptr("init_layout.base"),
      initSize: uint("init_layout.size"),
      initText: uint("init_layout.text_size"),
    }),
  };
}

/** A module's text and memory layout in one kernel. */
export type ModuleText = ReturnType<typeof resolveText>;

const u64 = (bytes: Uint8Array, at: number) =>
  new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(at, true);

const range = (base: bigint, size: number): AddressRange[] =>
  base && size > 0 ? [{ start: hex64(base), end: hex64(base + BigInt(size)) }] : [];

/**
 * The text and all the memory of the module at `at`.
 * @throws {GuestReadError} when its fields cannot be read.
 */
export async function textOf(
  mem: GuestMemory,
  t: ModuleText,
  at: KAddr,
): Promise<{ text: AddressRange[]; memory: AddressRange[] }> {
  if (t.kind === "layout") {
    const l = await readStruct(mem, at, t.layout);
    const base = (p: Pointer) => typeof p === "number" ? mem.space.fromKAddr(p) : 0n;
    return {
      text: [...range(base(l.coreBase), l.coreText), ...range(base(l.initBase), l.initText)],
      memory: [...range(base(l.coreBase), l.coreSize), ...range(base(l.initBase), l.initSize)],
    };
  }
  const m = t.memory;
  const { mem: bytes } = await readStruct(mem, at, m.layout);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const region = (i: number) =>
    range(u64(bytes, i * m.stride + m.base), view.getUint32(i * m.stride + m.size, true));
  const all = Array.from({ length: m.count }, (_, i) => i);
  return { text: t.text.flatMap(region), memory: all.flatMap(region) };
}
