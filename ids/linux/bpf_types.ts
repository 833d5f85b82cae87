/**
 * The kernel structures of the BPF program views (bpf_programs.ts), resolved once per guest
 * kernel.
 *
 * @module
 */

import type { Btf } from "../btf/mod.ts";
import {
  hexRaw,
  offsetOf,
  ptr,
  resolveLayout,
  resolveXarrayTypes,
  sint,
  str,
  uint,
} from "../kernel/mod.ts";
import { resolveFdTypes } from "./fd_table.ts";

/**
 * Resolves the structures of BPF programs. Field names are the same in Linux 6.1 and 6.18.
 * @throws {LayoutError} naming the struct and field the kernel lacks.
 */
export function resolveBpfTypes(btf: Btf) {
  const jited = btf.field("bpf_prog", "jited");
  return {
    fd: {
      ...resolveFdTypes(btf),
      /**
       * A file's private_data: a BPF program's file holds its `struct bpf_prog`; and its f_op,
       * `bpf_prog_fops` for every program's file.
       */
      file: resolveLayout(btf, "file", { fOp: ptr("f_op"), privateData: ptr("private_data") }),
    },
    prog: resolveLayout(btf, "bpf_prog", {
      type: uint("type"),
      tag: hexRaw("tag"),
      aux: ptr("aux"),
    }),
    /** `jited` is a bitfield: its byte in `struct bpf_prog` and its bit in that byte. */
    jited: { offset: Math.floor(jited.bitOffset / 8), bit: jited.bitOffset % 8 },
    aux: resolveLayout(btf, "bpf_prog_aux", {
      refcnt: sint("refcnt.counter"),
      usedMapCnt: uint("used_map_cnt"),
      id: uint("id"),
      ksymNext: ptr("ksym.lnode.next"),
      ksymPrev: ptr("ksym.lnode.prev"),
      ksymProg: uint("ksym.prog"),
      usedMaps: ptr("used_maps"),
      prog: ptr("prog"),
      loadTime: uint("load_time"),
      name: str("name"),
    }),
    /** A list entry's own `bpf_ksym`, which every entry but the list's head is. */
    ksym: resolveLayout(btf, "bpf_ksym", { next: ptr("lnode.next"), prog: uint("prog") }),
    ksymLnodeOffset: offsetOf(btf, "bpf_ksym", "lnode"),
    /** Offset of `ksym.lnode` in bpf_prog_aux: a list entry minus this is its aux. */
    lnodeOffset: offsetOf(btf, "bpf_prog_aux", "ksym.lnode"),
    map: resolveLayout(btf, "bpf_map", {
      type: uint("map_type"),
      id: uint("id"),
      name: str("name"),
    }),
    idr: resolveLayout(btf, "idr", { head: ptr("idr_rt.xa_head") }),
    idrHeadOffset: offsetOf(btf, "idr", "idr_rt.xa_head"),
    xarray: resolveXarrayTypes(btf),
    progTypes: enumNames(btf, "bpf_prog_type", "BPF_PROG_TYPE_"),
    mapTypes: enumNames(btf, "bpf_map_type", "BPF_MAP_TYPE_"),
  };
}

/** The resolved BPF structures of one guest kernel. */
export type BpfTypes = ReturnType<typeof resolveBpfTypes>;

/** An enum's names as bpftool spells them (`BPF_PROG_TYPE_SOCKET_FILTER` -> "socket_filter"). */
function enumNames(btf: Btf, name: string, prefix: string): Map<number, string> {
  const type = btf.find(name, "ENUM").map((id) => btf.type(id)).find((t) => t.kind === "ENUM");
  if (type?.kind !== "ENUM") return new Map();
  return new Map(type.values.map((v) => [v.value, v.name.replace(prefix, "").toLowerCase()]));
}

/** The kernel's MAX_USED_MAPS: a program uses at most this many maps. */
export const MAX_USED_MAPS = 64;

/** Types valid for a program, as a set of bits (below 32, for the plan's condition). */
export function typeMask(types: BpfTypes): bigint {
  let mask = 0n;
  for (const value of types.progTypes.keys()) {
    if (value > 0 && value < 32 && !types.progTypes.get(value)!.startsWith("_")) {
      mask |= 1n << BigInt(value);
    }
  }
  return mask;
}
