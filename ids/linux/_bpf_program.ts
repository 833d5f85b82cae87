/**
 * One BPF program in guest memory: taken for a program only when its own structures agree
 * (`prog->aux` and `aux->prog` point at each other), then described as the view lists it (its
 * type, whether it is JITed, the maps it uses). The agent's fds, both views and the re-check
 * read programs this way.
 *
 * @module
 */

import { follow, type GuestMemory, type KAddr } from "../memory/mod.ts";
import { type Fields, hexOf, peekStruct, readStruct } from "../kernel/mod.ts";
import { type BpfTypes, MAX_USED_MAPS, typeMask } from "./bpf_types.ts";
import { readFdTable } from "./fd_table.ts";
import type { KernelTypes } from "./kernel_types.ts";
import type { BpfMap, BpfProgram, BpfView } from "./bpf_programs.ts";

type Aux = Fields<BpfTypes["aux"]>;
type Prog = Fields<BpfTypes["prog"]>;

/** A program whose structures check out. */
export interface Found {
  progAt: KAddr;
  auxAt: KAddr;
  prog: Prog;
  aux: Aux;
}

/**
 * The program at `progAt` if its aux points back to it, else undefined; with `allowed`, only
 * a program whose type is a bit of `allowed` (as the plan's condition). Throws on bad reads.
 */
export async function readProgram(
  mem: GuestMemory,
  types: BpfTypes,
  progAt: KAddr,
  allowed?: bigint,
): Promise<Found | undefined> {
  const prog = peekStruct(mem, progAt, types.prog) ?? await readStruct(mem, progAt, types.prog);
  if (allowed !== undefined && (prog.type >= 32 || (allowed >> BigInt(prog.type) & 1n) === 0n)) {
    return undefined;
  }
  if (typeof prog.aux !== "number") return undefined;
  const aux = peekStruct(mem, prog.aux, types.aux) ?? await readStruct(mem, prog.aux, types.aux);
  return aux.prog === progAt ? { progAt, auxAt: prog.aux, prog, aux } : undefined;
}

/**
 * The `f_op` of the agent's program files, which is `bpf_prog_fops` (a data symbol, which
 * kallsyms lists only in kernels built with KALLSYMS_ALL): the first file of the agent's fd
 * table at `anchor` whose private_data is a program whose aux points back to it. Undefined when
 * none is. Read once per session (it is the kernel's): a check then reads only the files that
 * have it, not every file's private_data as a candidate program (a candidate read past the end
 * of what it points to can fault, and cost round trips to be sure).
 */
export async function findProgramFops(
  mem: GuestMemory,
  core: KernelTypes,
  types: BpfTypes,
  anchor: KAddr,
  maxFds: number,
): Promise<KAddr | undefined> {
  const table = await readFdTable(mem, core, types.fd, anchor, maxFds);
  const mask = typeMask(types);
  for (const slot of table.slots) {
    if (slot.file === undefined) continue;
    try {
      const file = await readStruct(mem, slot.file, types.fd.file);
      if (typeof file.privateData !== "number" || typeof file.fOp !== "number") continue;
      if (await readProgram(mem, types, file.privateData, mask)) return file.fOp;
    } catch {
      // Not a program file.
    }
  }
  return undefined;
}

/** The program whose aux is at `auxAt`, if its ksym says program and its prog points back. */
export async function readAux(
  mem: GuestMemory,
  types: BpfTypes,
  auxAt: KAddr,
): Promise<Found | undefined> {
  const aux = peekStruct(mem, auxAt, types.aux) ?? await readStruct(mem, auxAt, types.aux);
  if (aux.ksymProg !== 1 || typeof aux.prog !== "number") return undefined;
  const prog = peekStruct(mem, aux.prog, types.prog) ?? await readStruct(mem, aux.prog, types.prog);
  return prog.aux === auxAt ? { progAt: aux.prog, auxAt, prog, aux } : undefined;
}

/** The program as the view lists it; what of it cannot be read is its `error`. */
export async function describe(
  mem: GuestMemory,
  types: BpfTypes,
  { progAt, auxAt, prog, aux }: Found,
  own: boolean,
  seenIn: BpfView[],
  maps: Map<KAddr, BpfMap>,
): Promise<BpfProgram> {
  const out: BpfProgram = {
    id: aux.id,
    name: aux.name,
    ...hexOf("nameHex", aux.name),
    tag: prog.tag,
    type: types.progTypes.get(prog.type) ?? `type ${prog.type}`,
    loadTime: aux.loadTime,
    jited: false,
    maps: [],
    own,
    seenIn,
    missingFrom: [],
    prog: mem.space.hex(progAt),
    aux: mem.space.hex(auxAt),
  };
  try {
    const bitsAt = progAt + types.jited.offset;
    // Read in place where the snapshot holds them: no view per program.
    const bitsSpan = mem.peekSpan(bitsAt, 1);
    const bits = bitsSpan
      ? bitsSpan.view.getUint8(bitsSpan.base + bitsAt - bitsSpan.start)
      : (await mem.read(bitsAt, 1))[0];
    out.jited = (bits >> types.jited.bit & 1) === 1;
    if (aux.usedMapCnt > MAX_USED_MAPS) {
      throw new RangeError(`used_map_cnt ${aux.usedMapCnt} is more than ${MAX_USED_MAPS}`);
    }
    if (aux.usedMapCnt === 0) return out;
    const array = follow(aux.usedMaps, "used_maps");
    const len = aux.usedMapCnt * 8;
    const span = mem.peekSpan(array, len);
    let view: DataView, base: number;
    if (span) [view, base] = [span.view, span.base + array - span.start];
    else {
      const bytes = await mem.read(array, len);
      [view, base] = [new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), 0];
    }
    for (let i = 0; i < aux.usedMapCnt; i++) {
      const at = follow(mem.space.pointerAt(view, base + i * 8), `used_maps[${i}]`);
      let map = maps.get(at);
      if (!map) {
        const m = peekStruct(mem, at, types.map) ?? await readStruct(mem, at, types.map);
        map = {
          id: m.id,
          name: m.name,
          ...hexOf("nameHex", m.name),
          type: types.mapTypes.get(m.type) ?? `type ${m.type}`,
          map: mem.space.hex(at),
        };
        maps.set(at, map);
      }
      out.maps.push(map);
    }
  } catch (error) {
    out.error = (error as Error).message;
  }
  return out;
}
