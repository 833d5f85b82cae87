/**
 * What the agent checks in a BPF object before it hands it to libbpf: pure code over the ELF
 * bytes (the object, never guest memory), which may come from a peer and are hostile: every
 * offset, size and count is checked against the file before it is used.
 *
 * - **Program types.** Every executable section but `.text` (which holds subprograms) is a
 *   program section, and libbpf derives the program's type from its name. Only `uprobe` and
 *   `uretprobe` (with or without `/target`) pass: the agent attaches every program to its own
 *   trigger (a uprobe on libc's `getppid`, filtered to its own pid), so those are the only programs
 *   it can fire. Any other section is refused with the kind of program it would be (a `kprobe`
 *   needs kprobes and fires on every caller, `xdp` runs on packets, `lsm` decides permissions...),
 *   and so are sleepable uprobes (`uprobe.s`), which may block the agent's thread.
 * - **Helpers.** Every 8-byte slot of every executable section (subprograms and callbacks
 *   included) is read as an instruction. A `call` (opcode 0x85) with source register 0 calls the
 *   helper whose number is its immediate (include/uapi/linux/bpf.h, `__BPF_FUNC_MAPPER`); the
 *   helpers that write memory that is not the program's own, send signals, change a return value,
 *   jump to another program or act on the BPF system itself are refused by name, as is a number past
 *   the last helper the kernel defines (211: the list is frozen; new kernel functions are kfuncs).
 * - **Other calls.** A call with source register 1 (to a subprogram of the object) passes; a call
 *   that a relocation binds to a symbol the object does not define is a call of a kernel function
 *   (a kfunc, which libbpf resolves against the kernel's BTF) and is refused with its name, as is a
 *   call with source register 2 (a kfunc by BTF id) and any other call form.
 *
 * What it cannot rule out is said in the README ("Loading the IDS's programs").
 *
 * @module
 */

/** The object cannot be loaded: `message` names the section, program, helper or field. */
export class ObjectRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ObjectRefused";
  }
}

/** One program section that passed, as the check saw it. */
export interface CheckedSection {
  /** The section's name, e.g. "uprobe". */
  section: string;
  /** "uprobe" or "uretprobe": how the agent attaches its programs. */
  kind: "uprobe" | "uretprobe";
  /** The programs (function symbols) the section holds. */
  programs: string[];
  /** Instructions (8-byte slots) in the section. */
  instructions: number;
}

/** What {@linkcode checkObject} found in an object it accepts. */
export interface CheckedObject {
  sections: CheckedSection[];
  /** The helper numbers called anywhere in the object, sorted. */
  helpers: number[];
}

/** The last helper number the kernel defines (`cgrp_storage_delete`, since Linux 6.2). */
export const LAST_HELPER = 211;

/**
 * The helpers refused, by number (include/uapi/linux/bpf.h), with what makes each one unsafe for
 * an agent that must only read.
 */
export const FORBIDDEN_HELPERS: ReadonlyMap<number, { name: string; why: string }> = new Map([
  [9, { name: "bpf_skb_store_bytes", why: "it writes packet data" }],
  [10, { name: "bpf_l3_csum_replace", why: "it writes packet data" }],
  [11, { name: "bpf_l4_csum_replace", why: "it writes packet data" }],
  [12, {
    name: "bpf_tail_call",
    why: "it jumps to whatever program a program array holds when it runs, which no check of " +
      "this object sees",
  }],
  [36, { name: "bpf_probe_write_user", why: "it writes the memory of a user process" }],
  [49, { name: "bpf_setsockopt", why: "it changes a socket's options" }],
  [58, { name: "bpf_override_return", why: "it overrides the return value of a kernel function" }],
  [74, { name: "bpf_lwt_seg6_store_bytes", why: "it writes packet data" }],
  [104, { name: "bpf_sysctl_set_new_value", why: "it changes the value written to a sysctl" }],
  [109, { name: "bpf_send_signal", why: "it sends a signal to a process" }],
  [117, { name: "bpf_send_signal_thread", why: "it sends a signal to a thread" }],
  [143, { name: "bpf_store_hdr_opt", why: "it writes TCP header options" }],
  [166, { name: "bpf_sys_bpf", why: "it runs bpf() system calls from the kernel" }],
  [168, { name: "bpf_sys_close", why: "it closes file descriptors" }],
  [187, { name: "bpf_set_retval", why: "it changes the return value seen by a system call" }],
  [190, { name: "bpf_xdp_store_bytes", why: "it writes packet data" }],
]);

const SHT_PROGBITS = 1;
const SHT_SYMTAB = 2;
const SHT_STRTAB = 3;
const SHT_RELA = 4;
const SHT_NOBITS = 8;
const SHT_REL = 9;
const SHF_EXECINSTR = 4;
const EM_BPF = 247;
const ET_REL = 1;
const SECTION_HEADER = 64;
const SYMBOL = 24;
const REL = 16;
const STT_FUNC = 2;
/** Bounds of a hostile object's tables: far above what clang writes (walk.bpf.o: 30 sections). */
const MAX_SECTIONS = 4096;
const MAX_NAME = 512;
/** BPF_JMP | BPF_CALL. */
const CALL = 0x85;
const PSEUDO_CALL = 1;
const PSEUDO_KFUNC_CALL = 2;

/** Program section prefixes libbpf knows, with what the agent says of each kind. */
const REFUSED_KINDS: [RegExp, string][] = [
  [/^u(ret)?probe\.s(\/|$)/, "a sleepable uprobe, which may block the agent's thread"],
  [/^usdt(\/|$)/, "a USDT probe, which fires at a probe point the agent does not call"],
  [
    /^k(ret)?(probe|syscall)(\.multi)?(\/|$)/,
    "a kprobe, which needs kprobes and fires on every caller, not on the agent's trigger",
  ],
  [
    /^(tp|tracepoint|raw_tp|raw_tracepoint)(\.w)?(\/|$)/,
    "a tracepoint program, which fires on every task",
  ],
  [
    /^(fentry|fexit|fmod_ret|freplace|tp_btf)(\.s)?(\/|$)/,
    "a tracing program attached to kernel functions",
  ],
  [/^lsm(\.s|_cgroup)?(\/|$)/, "an LSM program, which decides permissions"],
  [/^iter(\.s)?(\/|$)/, "a BPF iterator"],
  [/^perf_event$/, "a perf_event program, which fires on a perf event the agent does not open"],
  [
    /^(xdp|tc|classifier|action|socket|sk_|sockops|flow_dissector|lwt_|netfilter)/,
    "a network program",
  ],
  [/^cgroup/, "a cgroup program"],
  [/^struct_ops/, "a struct_ops program, which replaces kernel operations"],
  [/^syscall$/, "a syscall program, which runs bpf() system calls"],
];

/**
 * Checks a BPF object: its program types and every call of its instructions (see the module's
 * documentation).
 * @throws {ObjectRefused} naming what is refused, or what is malformed.
 */
export function checkObject(elf: Uint8Array): CheckedObject {
  const file = new ElfFile(elf);
  const sections: CheckedSection[] = [];
  const helpers = new Set<number>();
  for (const sh of file.sections) {
    const shown = printableName(sh.name);
    if (sh.type === SHT_RELA && file.isCode(sh.info)) {
      throw new ObjectRefused(
        `Cannot load the object: section "${shown}" holds relocations with addends (RELA) for code, which libbpf does not apply`,
      );
    }
    if (!file.isCode(sh.index)) continue;
    let kind: CheckedSection["kind"] | undefined;
    if (sh.name !== ".text") kind = programKind(sh.name);
    if (sh.size % 8 !== 0) {
      throw new ObjectRefused(
        `Cannot load the object: section "${shown}" is ${sh.size} bytes, not whole instructions`,
      );
    }
    const calls = file.externalCalls(sh.index);
    const bytes = file.bytes(sh.offset, sh.size);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const slots = Math.floor(sh.size / 8);
    for (let i = 0; i < slots; i++) {
      const code = bytes[i * 8];
      const at = `section "${shown}", instruction ${i}`;
      if ((code & 0xf0) === 0x80 && ((code & 7) === 5 || (code & 7) === 6) && code !== CALL) {
        throw new ObjectRefused(
          `Cannot load the object: ${at} is a call of form 0x${
            code.toString(16)
          }, which the check cannot follow`,
        );
      }
      if (code !== CALL) continue;
      const src = bytes[i * 8 + 1] >> 4;
      const imm = view.getInt32(i * 8 + 4, true);
      const target = calls.get(i * 8);
      if (target !== undefined) {
        throw new ObjectRefused(
          `Cannot load the object: ${at} calls kernel function "${
            printableName(target)
          }" (a kfunc, resolved against the kernel at load), and the agent calls none`,
        );
      }
      if (src === PSEUDO_CALL) continue;
      if (src === PSEUDO_KFUNC_CALL) {
        throw new ObjectRefused(
          `Cannot load the object: ${at} calls the kernel function of BTF id ${imm} (a kfunc), and the agent calls none`,
        );
      }
      if (src !== 0) {
        throw new ObjectRefused(
          `Cannot load the object: ${at} is a call with source register ${src}, which the check cannot follow`,
        );
      }
      const forbidden = FORBIDDEN_HELPERS.get(imm);
      if (forbidden) {
        throw new ObjectRefused(
          `Cannot load the object: ${at} calls helper ${forbidden.name} (${imm}): ${forbidden.why}`,
        );
      }
      if (imm < 1 || imm > LAST_HELPER) {
        throw new ObjectRefused(
          `Cannot load the object: ${at} calls helper ${imm}, which no kernel defines (the last is ${LAST_HELPER})`,
        );
      }
      helpers.add(imm);
    }
    if (kind) {
      sections.push({
        section: sh.name,
        kind,
        programs: file.functions(sh.index),
        instructions: slots,
      });
    }
  }
  if (sections.length === 0) {
    throw new ObjectRefused("Cannot load the object: it holds no program section");
  }
  return { sections, helpers: [...helpers].sort((a, b) => a - b) };
}

/** The attach kind of an allowed program section, or an {@linkcode ObjectRefused}. */
export function programKind(section: string): "uprobe" | "uretprobe" {
  const allowed = /^(uprobe|uretprobe)(\/.*)?$/.exec(section);
  if (allowed) return allowed[1] as "uprobe" | "uretprobe";
  const known = REFUSED_KINDS.find(([pattern]) => pattern.test(section));
  const what = known ? known[1] : "a program of a type the agent does not know";
  throw new ObjectRefused(
    `Cannot load the object: section "${
      printableName(section)
    }" is ${what}; the agent loads only uprobe and uretprobe programs, which its trigger fires`,
  );
}

interface Symbol {
  name: string;
  info: number;
  shndx: number;
}

interface Section {
  index: number;
  name: string;
  type: number;
  flags: bigint;
  offset: number;
  size: number;
  link: number;
  info: number;
}

/** A relocatable ELF64 little-endian BPF object, every field checked against the file. */
class ElfFile {
  readonly sections: Section[] = [];
  #elf: Uint8Array;
  #view: DataView;
  /** Each symbol table's symbols, read once. */
  #symbolTables = new Map<number, Symbol[]>();

  constructor(elf: Uint8Array) {
    this.#elf = elf;
    this.#view = new DataView(elf.buffer, elf.byteOffset, elf.byteLength);
    if (
      elf.length < 64 || elf[0] !== 0x7f || elf[1] !== 0x45 || elf[2] !== 0x4c || elf[3] !== 0x46
    ) {
      throw malformed("it is not an ELF file");
    }
    if (elf[4] !== 2 || elf[5] !== 1) throw malformed("it is not a 64-bit little-endian ELF");
    const v = this.#view;
    if (v.getUint16(18, true) !== EM_BPF) {
      throw malformed(`its machine is ${v.getUint16(18, true)}, not BPF (${EM_BPF})`);
    }
    if (v.getUint16(16, true) !== ET_REL) throw malformed("it is not a relocatable object");
    const shoff = this.#u64(0x28, "the section header offset");
    const entsize = v.getUint16(0x3a, true);
    const count = v.getUint16(0x3c, true);
    const strndx = v.getUint16(0x3e, true);
    if (entsize !== SECTION_HEADER) throw malformed(`its section headers are ${entsize} bytes`);
    if (count === 0 || count > MAX_SECTIONS) {
      throw malformed(`it has ${count} sections (1..${MAX_SECTIONS} are read)`);
    }
    this.#within(shoff, count * SECTION_HEADER, "the section headers");
    const raw = Array.from({ length: count }, (_, index) => {
      const at = shoff + index * SECTION_HEADER;
      const type = v.getUint32(at + 4, true);
      const offset = this.#u64(at + 24, `section ${index}'s offset`);
      const size = this.#u64(at + 32, `section ${index}'s size`);
      if (type !== SHT_NOBITS && index !== 0) this.#within(offset, size, `section ${index}`);
      return {
        index,
        nameAt: v.getUint32(at, true),
        type,
        flags: v.getBigUint64(at + 8, true),
        offset,
        size,
        link: v.getUint32(at + 40, true),
        info: v.getUint32(at + 44, true),
      };
    });
    if (strndx === 0 || strndx >= count || raw[strndx].type !== SHT_STRTAB) {
      throw malformed(`its section name table (section ${strndx}) is not a string table`);
    }
    const names = raw[strndx];
    // Sections of a real object do not overlap: more bytes in them than in the file is a table
    // that would have the check read the same bytes many times over.
    const total = raw.reduce((sum, sh) => sum + (sh.type === SHT_NOBITS ? 0 : sh.size), 0);
    if (total > elf.length) {
      throw malformed(`its sections hold ${total} bytes, more than its ${elf.length}`);
    }
    for (const sh of raw.slice(1)) {
      const { nameAt, ...rest } = sh;
      this.sections.push({ ...rest, name: this.#string(names, nameAt, `section ${sh.index}`) });
    }
  }

  /** Whether section `index` holds instructions (libbpf's test: PROGBITS and executable). */
  isCode(index: number): boolean {
    const sh = this.#section(index);
    return !!sh && sh.type === SHT_PROGBITS && (sh.flags & BigInt(SHF_EXECINSTR)) !== 0n &&
      sh.size > 0;
  }

  bytes(offset: number, size: number): Uint8Array {
    return this.#elf.subarray(offset, offset + size);
  }

  /** The names of the function symbols defined in section `index`. */
  functions(index: number): string[] {
    return this.sections.filter((sh) => sh.type === SHT_SYMTAB).flatMap((symtab) =>
      this.#symbols(symtab).filter((s) => (s.info & 0xf) === STT_FUNC && s.shndx === index)
        .map((s) => s.name)
    );
  }

  /**
   * The calls of section `index` that its relocations bind to a symbol the object does not
   * define (an extern: a kfunc), by byte offset, with the symbol's name.
   */
  externalCalls(index: number): Map<number, string> {
    const out = new Map<number, string>();
    for (const rel of this.sections.filter((sh) => sh.type === SHT_REL && sh.info === index)) {
      const symtab = this.#section(rel.link);
      if (!symtab || symtab.type !== SHT_SYMTAB) {
        throw malformed(`relocation section "${rel.name}" links to no symbol table`);
      }
      const symbols = this.#symbols(symtab);
      const code = this.#section(index)!;
      for (let at = 0; at + REL <= rel.size; at += REL) {
        const offset = this.#u64(rel.offset + at, `a relocation of "${rel.name}"`);
        const symbol = this.#view.getUint32(rel.offset + at + 12, true);
        if (offset + 8 > code.size || offset % 8 !== 0) {
          throw malformed(
            `a relocation of "${rel.name}" points at byte ${offset} of "${code.name}"`,
          );
        }
        if (symbol >= symbols.length) {
          throw malformed(`a relocation of "${rel.name}" names symbol ${symbol}, past its table`);
        }
        const extern = symbol !== 0 && symbols[symbol].shndx === 0;
        if (extern && this.#elf[code.offset + offset] === CALL) {
          out.set(offset, symbols[symbol].name);
        }
      }
    }
    return out;
  }

  #symbols(symtab: Section): Symbol[] {
    const known = this.#symbolTables.get(symtab.index);
    if (known) return known;
    const strtab = this.#section(symtab.link);
    if (!strtab || strtab.type !== SHT_STRTAB) {
      throw malformed(`symbol table "${symtab.name}" links to no string table`);
    }
    const symbols: Symbol[] = [];
    for (let i = 0; (i + 1) * SYMBOL <= symtab.size; i++) {
      const at = symtab.offset + i * SYMBOL;
      symbols.push({
        name: this.#string(strtab, this.#view.getUint32(at, true), `symbol ${i}`),
        info: this.#elf[at + 4],
        shndx: this.#view.getUint16(at + 6, true),
      });
    }
    this.#symbolTables.set(symtab.index, symbols);
    return symbols;
  }

  #section(index: number): Section | undefined {
    return index >= 1 && index <= this.sections.length ? this.sections[index - 1] : undefined;
  }

  #string(table: { offset: number; size: number }, at: number, what: string): string {
    if (at >= table.size) throw malformed(`${what}'s name is outside its string table`);
    const start = table.offset + at;
    const limit = Math.min(table.offset + table.size, start + MAX_NAME + 1);
    const end = this.#elf.subarray(start, limit).indexOf(0);
    if (end < 0) throw malformed(`${what}'s name is not terminated within ${MAX_NAME} bytes`);
    return new TextDecoder().decode(this.#elf.subarray(start, start + end));
  }

  #u64(at: number, what: string): number {
    const value = this.#view.getBigUint64(at, true);
    if (value > BigInt(this.#elf.length)) throw malformed(`${what} (${value}) passes its end`);
    return Number(value);
  }

  #within(offset: number, size: number, what: string): void {
    if (offset + size > this.#elf.length) {
      throw malformed(`${what} (${size} bytes at ${offset}) passes its end (${this.#elf.length})`);
    }
  }
}

function malformed(problem: string): ObjectRefused {
  return new ObjectRefused(`Cannot load the object: ${problem}`);
}

/** A section name as a message shows it: control characters escaped, at most 80 characters. */
function printableName(name: string): string {
  // deno-lint-ignore no-control-regex
  const shown = name.replace(/[\x00-\x1f\x7f\\"]/g, (c) => `\\x${c.charCodeAt(0).toString(16)}`);
  return shown.length > 80 ? `${shown.slice(0, 80)}...` : shown;
}
