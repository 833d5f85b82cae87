/**
 * The two kernel views of BPF programs, walked: the `bpf_kallsyms` list, entered from the first
 * of the agent's programs linked on it, and the program IDR. Each walk is bounded and checked
 * for cycles, an entry that is no program is dropped and counted, and a walk that cannot go on
 * is truncated with its reason.
 *
 * @module
 */

import type { GuestMemory, KAddr } from "../memory/mod.ts";
import { peekStruct, readStruct, readXarray } from "../kernel/mod.ts";
import type { BpfTypes } from "./bpf_types.ts";
import type { BpfPrograms, BpfView, BpfViewStatus } from "./bpf_programs.ts";
import { type Found, readAux, readProgram } from "./_bpf_program.ts";

/** Walks `bpf_kallsyms` from the first of the agent's programs that is linked on it. */
export async function walkKallsyms(
  mem: GuestMemory,
  types: BpfTypes,
  own: Found[],
  max: number,
  out: BpfPrograms,
  add: (program: Found, view: BpfView) => void,
  fdReason: string | undefined,
): Promise<void> {
  const view = out.views.kallsyms;
  const start = own.find((p) => p.aux.ksymNext !== p.auxAt + types.lnodeOffset);
  if (!start) {
    view.supported = false;
    view.reason = own.length === 0
      ? `not reachable: no BPF program in the agent's fd table${fdReason ? ` (${fdReason})` : ""}`
      : "not reachable: none of the agent's programs is on the list (not JITed, or bpf_jit_kallsyms is off)";
    return;
  }
  const head = start.auxAt + types.lnodeOffset;
  add(start, "kallsyms");
  const seen = new Set<KAddr>([head]);
  let at = head;
  try {
    let next = mem.space.follow(start.aux.ksymNext, "ksym.lnode.next of aux", start.auxAt);
    while (next !== head) {
      if (seen.has(next)) {
        throw new Error(
          `the list loops at ${mem.space.hex(next)} without returning to ${mem.space.hex(head)}`,
        );
      }
      if (view.entries >= max) throw new RangeError(`more than ${max} entries`);
      seen.add(next);
      view.entries++;
      at = next;
      const ksymAt = at - types.ksymLnodeOffset;
      const ksym = peekStruct(mem, ksymAt, types.ksym) ??
        await readStruct(mem, ksymAt, types.ksym);
      const program = ksym.prog === 1
        ? await readAux(mem, types, at - types.lnodeOffset).catch(() => undefined)
        : undefined;
      if (!program) view.dropped++;
      else if (program.aux.id === 0) out.subprograms++;
      else add(program, "kallsyms");
      next = mem.space.follow(ksym.next, "lnode.next of bpf_ksym", at - types.ksymLnodeOffset);
    }
  } catch (error) {
    view.truncated = true;
    view.reason = `bpf_kallsyms after ${mem.space.hex(at)}: ${(error as Error).message}`;
  }
}

/** Reads the programs of the IDR at `progIdr`. */
export async function walkIdr(
  mem: GuestMemory,
  types: BpfTypes,
  progIdr: KAddr,
  max: number,
  view: BpfViewStatus,
  add: (program: Found, view: BpfView) => void,
  known: Map<KAddr, Found>,
): Promise<void> {
  try {
    const xa = await readXarray(mem, types.xarray, progIdr + types.idrHeadOffset, {
      maxEntries: max,
    });
    if (xa.truncated) {
      view.truncated = true;
      view.reason = `prog_idr: ${xa.reason}`;
    }
    for (const entry of xa.entries) {
      view.entries++;
      const program = known.get(entry.value) ??
        await readProgram(mem, types, entry.value).catch(() => undefined);
      if (program && program.aux.id === entry.index) add(program, "prog_idr");
      else view.dropped++;
    }
  } catch (error) {
    view.truncated = true;
    view.reason = `prog_idr ${mem.space.hex(progIdr)}: ${(error as Error).message}`;
  }
}
