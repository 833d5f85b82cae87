/**
 * The race check of the BPF program views: a program that one whole view holds and the other
 * lacks is re-read through the live guest, whose answer tells a program loading or unloading (a
 * race, counted, not reported) from one the other view still lacks. Its reads are counted.
 *
 * @module
 */

import type { AddressSpace, GuestMemory, Pointer } from "../memory/mod.ts";
import { lookupXarray } from "../kernel/mod.ts";
import type { BpfTypes } from "./bpf_types.ts";
import type { BpfOptions, BpfProgram, BpfPrograms, BpfView } from "./bpf_programs.ts";
import { type Found, readProgram } from "./_bpf_program.ts";

/** The pointer in the first 8 of `bytes`, as `space` reads it. */
function pointerIn(bytes: Uint8Array, space: AddressSpace): Pointer {
  return space.pointerAt(new DataView(bytes.buffer, bytes.byteOffset, 8), 0);
}

/**
 * Re-reads a program seen in one view only through the live guest. Undefined when it was a race
 * (loading, unloading, gone); else the views it is still missing from ([] when it need not be
 * in the other: a program that is not JITed is on no kallsyms list).
 */
export async function confirmMissing(
  types: BpfTypes,
  found: Found,
  program: BpfProgram,
  options: BpfOptions,
  out: BpfPrograms,
): Promise<BpfView[] | undefined> {
  const inIdr = program.seenIn.includes("prog_idr");
  if (inIdr && !program.jited) return [];
  const live = options.confirm;
  if (!live) return inIdr ? ["kallsyms"] : ["prog_idr"];
  const race = () => {
    out.races++;
    return undefined;
  };
  let reads = 0;
  const counted: GuestMemory = {
    space: live.space,
    peek: () => undefined,
    peekSpan: () => undefined,
    peekRanges: () => undefined,
    read: (addr, len) => {
      reads++;
      return live.read(addr, len);
    },
  };
  try {
    const now = await readProgram(counted, types, found.progAt);
    if (!now || now.auxAt !== found.auxAt || now.aux.refcnt <= 0) return race();
    if (inIdr) {
      const lnode = found.auxAt + types.lnodeOffset;
      if (typeof now.aux.ksymNext !== "number" || typeof now.aux.ksymPrev !== "number") {
        return ["kallsyms"];
      }
      if (now.aux.ksymNext === lnode) return ["kallsyms"];
      const prevOfNext = pointerIn(await counted.read(now.aux.ksymNext + 8, 8), live.space);
      const nextOfPrev = pointerIn(await counted.read(now.aux.ksymPrev, 8), live.space);
      return prevOfNext === lnode && nextOfPrev === lnode ? race() : ["kallsyms"];
    }
    const head = options.progIdr! + types.idrHeadOffset;
    const inIdrNow = await lookupXarray(counted, types.xarray, head, now.aux.id);
    return inIdrNow === found.progAt ? race() : ["prog_idr"];
  } catch {
    // What cannot be re-read is gone: freed between the walk and the re-read.
    return race();
  } finally {
    out.confirmReads += reads;
  }
}
