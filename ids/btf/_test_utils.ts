/**
 * A small kernel-like BTF the tests share, and a check that hostile BTF fails only with
 * {@linkcode BtfError}.
 *
 * @module
 */

import { BtfBuilder } from "./builder.ts";
import { BtfError } from "./btf_error.ts";
import { parseBtf } from "./parse.ts";
import type { Btf } from "./btf.ts";

/** Type ids of {@linkcode sampleKernel}. */
export interface SampleIds {
  int: number;
  uint: number;
  char: number;
  listHead: number;
  listHeadPtr: number;
  kuid: number;
  kuidT: number;
  cred: number;
  credPtr: number;
  comm: number;
  flagsUnion: number;
  schedBits: number;
  task: number;
}

/**
 * A kernel-like BTF: `list_head`, `kuid_t` (a typedef of an anonymous struct holding `val`),
 * `cred`, and a `task_struct` with an array, pointers, an anonymous union wrapping an
 * anonymous struct, and bitfields in both BTF encodings.
 */
export function sampleKernel(): { builder: BtfBuilder; ids: SampleIds } {
  const b = new BtfBuilder();
  const int = b.addInt("int", 4, { signed: true });
  const uint = b.addInt("unsigned int", 4);
  const char = b.addInt("char", 1, { char: true });
  // list_head refers to the pointer added right after it: ids may point forward.
  const listHead = b.addStruct("list_head", {
    size: 16,
    members: [
      { name: "next", typeId: b.typeCount + 2, bitOffset: 0 },
      { name: "prev", typeId: b.typeCount + 2, bitOffset: 64 },
    ],
  });
  const listHeadPtr = b.addPtr(listHead);
  const kuid = b.addStruct("", { size: 4, members: [{ name: "val", typeId: uint, bitOffset: 0 }] });
  const kuidT = b.addTypedef("kuid_t", kuid);
  const cred = b.addStruct("cred", {
    size: 16,
    members: [
      { name: "usage", typeId: int, bitOffset: 0 },
      { name: "uid", typeId: kuidT, bitOffset: 32 },
      { name: "gid", typeId: b.addConst(kuidT), bitOffset: 64 },
      { name: "suid", typeId: kuidT, bitOffset: 96 },
    ],
  });
  const credPtr = b.addPtr(b.addConst(cred));
  const comm = b.addArray(char, 16, { indexTypeId: int });
  const inner = b.addStruct("", {
    size: 8,
    members: [
      { name: "flags", typeId: uint, bitOffset: 0 },
      { name: "ptrace", typeId: uint, bitOffset: 32 },
    ],
  });
  const flagsUnion = b.addUnion("", {
    size: 8,
    members: [
      { name: "raw", typeId: b.addInt("long unsigned int", 8), bitOffset: 0 },
      { typeId: inner, bitOffset: 0 },
    ],
  });
  const schedBits = b.addStruct("", {
    size: 4,
    members: [
      { name: "sched_reset_on_fork", typeId: uint, bitOffset: 0, bitfieldSize: 1 },
      { name: "sched_migrated", typeId: uint, bitOffset: 1, bitfieldSize: 3 },
    ],
  });
  const legacyBits = b.addStruct("", {
    size: 4,
    members: [
      { name: "in_iowait", typeId: b.addInt("unsigned int", 4, { bits: 1 }), bitOffset: 4 },
      { name: "in_lru_fault", typeId: b.addInt("unsigned int", 4, { bits: 2 }), bitOffset: 5 },
    ],
  });
  const task = b.addStruct("task_struct", {
    size: 96,
    members: [
      { name: "__state", typeId: b.addVolatile(uint), bitOffset: 0 },
      { name: "pid", typeId: int, bitOffset: 32 },
      { typeId: flagsUnion, bitOffset: 64 },
      { name: "tasks", typeId: listHead, bitOffset: 128 },
      { name: "real_cred", typeId: credPtr, bitOffset: 256 },
      { name: "comm", typeId: comm, bitOffset: 320 },
      { typeId: schedBits, bitOffset: 448 },
      { typeId: legacyBits, bitOffset: 480 },
      { name: "cred_copy", typeId: cred, bitOffset: 512 },
      { name: "stack", typeId: b.addPtr(0), bitOffset: 640 },
    ],
  });
  return {
    builder: b,
    ids: {
      int,
      uint,
      char,
      listHead,
      listHeadPtr,
      kuid,
      kuidT,
      cred,
      credPtr,
      comm,
      flagsUnion,
      schedBits,
      task,
    },
  };
}

/**
 * Parses `bytes` and asks the result everything a caller could, for every type: only `field()`
 * and `sizeof()` may throw, and only BtfError. Returns whether `bytes` parsed; any exception
 * but a BtfError from those propagates.
 */
export function exercise(bytes: Uint8Array): boolean {
  const attempt = (fn: () => unknown) => {
    try {
      fn();
    } catch (error) {
      if (!(error instanceof BtfError)) throw error;
    }
  };
  let btf: Btf | undefined;
  attempt(() => btf = parseBtf(bytes));
  if (btf === undefined) return false;
  for (let id = 0; id <= btf.typeCount; id++) {
    const type = btf.type(id);
    btf.resolve(id);
    btf.find(type.name, type.kind);
    attempt(() => btf!.sizeof(id));
    if (type.kind === "STRUCT" || type.kind === "UNION") {
      for (const member of type.members) attempt(() => btf!.field(type.name, member.name));
    }
  }
  return true;
}
