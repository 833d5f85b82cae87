/**
 * Test fixtures of BPF objects: a writer of small relocatable ELF64 BPF files, section by
 * section, for the check's unit tests, and clang-built objects from C source.
 *
 * @module
 */

import { concatBytes } from "../../protocol/mod.ts";

/** A section of a hand-built object. */
export interface FixtureSection {
  name: string;
  /** SHT_PROGBITS (1) by default. */
  type?: number;
  /** SHF_ALLOC | SHF_EXECINSTR (6) by default. */
  flags?: number;
  bytes: Uint8Array;
  /** Relocations: byte offset in this section and the name of an undefined (extern) symbol. */
  externCalls?: { offset: number; symbol: string }[];
}

/** One BPF instruction: opcode, registers (dst | src << 4), offset, immediate. */
export function insn(code: number, dst = 0, src = 0, off = 0, imm = 0): Uint8Array {
  const out = new Uint8Array(8);
  const view = new DataView(out.buffer);
  out[0] = code;
  out[1] = (dst & 0xf) | (src << 4);
  view.setInt16(2, off, true);
  view.setInt32(4, imm, true);
  return out;
}

export const EXIT = insn(0x95);
/** r0 = 0. */
export const MOV0 = insn(0xb7);
/** A call of helper `id`. */
export const helper = (id: number) => insn(0x85, 0, 0, 0, id);

/** `parts` one after another, in a new array. */
export const join = (...parts: Uint8Array[]): Uint8Array => concatBytes(parts);

/**
 * Writes a relocatable ELF64 BPF object holding `sections`, with a function symbol at the start
 * of each executable section (named after it, `/` as `_`) and a symbol table.
 */
export function buildElf(sections: FixtureSection[]): Uint8Array {
  const enc = new TextEncoder();
  const strtab: number[] = [0];
  const str = (s: string) => {
    const at = strtab.length;
    strtab.push(...enc.encode(s), 0);
    return at;
  };
  // Section indexes: 0 null, 1..n the given ones, then .rel sections, .symtab, .strtab, .shstrtab.
  const n = sections.length;
  const symbols: { name: number; info: number; shndx: number }[] = [{ name: 0, info: 0, shndx: 0 }];
  sections.forEach((s, i) => {
    if (((s.flags ?? 6) & 4) !== 0) {
      symbols.push({ name: str(s.name.replaceAll("/", "_")), info: 0x12, shndx: i + 1 });
    }
  });
  const externs = new Map<string, number>();
  for (const s of sections) {
    for (const c of s.externCalls ?? []) {
      if (!externs.has(c.symbol)) {
        externs.set(c.symbol, symbols.length);
        symbols.push({ name: str(c.symbol), info: 0x10, shndx: 0 });
      }
    }
  }
  const rels = sections.flatMap((s, i) =>
    s.externCalls?.length ? [{ name: `.rel${s.name}`, target: i + 1, calls: s.externCalls }] : []
  );
  const symtabIndex = n + rels.length + 1;
  const all: {
    name: string;
    type: number;
    flags: number;
    bytes: Uint8Array;
    link: number;
    info: number;
    entsize: number;
  }[] = [
    ...sections.map((s) => ({
      name: s.name,
      type: s.type ?? 1,
      flags: s.flags ?? 6,
      bytes: s.bytes,
      link: 0,
      info: 0,
      entsize: 0,
    })),
    ...rels.map((r) => {
      const bytes = new Uint8Array(16 * r.calls.length);
      const view = new DataView(bytes.buffer);
      r.calls.forEach((c, i) => {
        view.setBigUint64(i * 16, BigInt(c.offset), true);
        view.setBigUint64(i * 16 + 8, (BigInt(externs.get(c.symbol)!) << 32n) | 10n, true);
      });
      return {
        name: r.name,
        type: 9,
        flags: 0,
        bytes,
        link: symtabIndex,
        info: r.target,
        entsize: 16,
      };
    }),
  ];
  const symtab = new Uint8Array(24 * symbols.length);
  const sv = new DataView(symtab.buffer);
  symbols.forEach((s, i) => {
    sv.setUint32(i * 24, s.name, true);
    symtab[i * 24 + 4] = s.info;
    sv.setUint16(i * 24 + 6, s.shndx, true);
  });
  all.push({
    name: ".symtab",
    type: 2,
    flags: 0,
    bytes: symtab,
    link: symtabIndex + 1,
    info: 1,
    entsize: 24,
  });
  all.push({
    name: ".strtab",
    type: 3,
    flags: 0,
    bytes: Uint8Array.from(strtab),
    link: 0,
    info: 0,
    entsize: 0,
  });
  const shstr: number[] = [0];
  const names = [...all.map((s) => s.name), ".shstrtab"].map((name) => {
    const at = shstr.length;
    shstr.push(...enc.encode(name), 0);
    return at;
  });
  all.push({
    name: ".shstrtab",
    type: 3,
    flags: 0,
    bytes: Uint8Array.from(shstr),
    link: 0,
    info: 0,
    entsize: 0,
  });
  let at = 64;
  const offsets = all.map((s) => {
    at = (at + 7) & ~7;
    const o = at;
    at += s.bytes.length;
    return o;
  });
  const shoff = (at + 7) & ~7;
  const out = new Uint8Array(shoff + 64 * (all.length + 1));
  const v = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  v.setUint16(16, 1, true); // ET_REL
  v.setUint16(18, 247, true); // EM_BPF
  v.setUint32(20, 1, true);
  v.setBigUint64(0x28, BigInt(shoff), true);
  v.setUint16(0x34, 64, true);
  v.setUint16(0x3a, 64, true);
  v.setUint16(0x3c, all.length + 1, true);
  v.setUint16(0x3e, all.length, true);
  all.forEach((s, i) => {
    out.set(s.bytes, offsets[i]);
    const h = shoff + 64 * (i + 1);
    v.setUint32(h, names[i], true);
    v.setUint32(h + 4, s.type, true);
    v.setBigUint64(h + 8, BigInt(s.flags), true);
    v.setBigUint64(h + 24, BigInt(offsets[i]), true);
    v.setBigUint64(h + 32, BigInt(s.bytes.length), true);
    v.setUint32(h + 40, s.link, true);
    v.setUint32(h + 44, s.info, true);
    v.setBigUint64(h + 48, 8n, true);
    v.setBigUint64(h + 56, BigInt(s.entsize), true);
  });
  return out;
}

/**
 * Compiles BPF C `source` with clang (`-target bpf -O2 -g`, the project's `bpf/` headers on the
 * include path) into an object in a temporary directory, and returns its bytes.
 * @throws {Error} with clang's output when it fails.
 */
export async function compileBpf(source: string): Promise<Uint8Array> {
  const dir = await Deno.makeTempDir({ prefix: "ebpfmon-bpf-" });
  try {
    await Deno.writeTextFile(`${dir}/prog.bpf.c`, source);
    const bpf = new URL("../../bpf/", import.meta.url).pathname;
    const out = await new Deno.Command("clang", {
      args: [
        "-g",
        "-O2",
        "-target",
        "bpf",
        "-D__TARGET_ARCH_x86",
        "-I",
        bpf,
        "-I",
        "/usr/include/x86_64-linux-gnu",
        "-c",
        `${dir}/prog.bpf.c`,
        "-o",
        `${dir}/prog.bpf.o`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(`clang failed on the test object:\n${new TextDecoder().decode(out.stderr)}`);
    }
    return await Deno.readFile(`${dir}/prog.bpf.o`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The head of a BPF C source: the project's kernel types and libbpf's helper declarations. */
export const BPF_PRELUDE = `#include "kernel.h"
#include <bpf/bpf_helpers.h>
char LICENSE[] SEC("license") = "GPL";
`;
