/**
 * Reading a relocatable ELF64 little-endian BPF object for the check (`bpf_check.ts`): its
 * sections, symbols and the relocations of its code. The bytes may come from a peer and are
 * hostile, so every offset, size and count is checked against the file before it is used, and a
 * malformed file is an {@linkcode ObjectRefused}. It reads structure only; what may be loaded is
 * for the check to say.
 *
 * @module
 */

import { ObjectRefused } from "./object_refused.ts";

const SHT_PROGBITS = 1;
const SHT_SYMTAB = 2;
const SHT_STRTAB = 3;
export const SHT_RELA = 4;
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
export const CALL = 0x85;

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
export class ElfFile {
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
