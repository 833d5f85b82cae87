/**
 * A guest's address space, learned from the guest once per session: 4-level unless its agent
 * reports 5-level paging (HELLO's `la57` feature), and then from the bases its kernel chose at
 * boot for the regions below the 4-level kernel half, which it keeps in `page_offset_base`,
 * `vmalloc_base` and `vmemmap_base` (arch/x86/mm/kaslr.c; Documentation/arch/x86/x86_64/mm.rst).
 *
 * Everything here is the guest's word: the symbols' addresses come from its kallsyms and their
 * values from its memory. {@linkcode AddressSpace.fiveLevel} refuses bases that no 5-level
 * kernel would have, naming them; bases that are plausible but false only misplace that guest's
 * own windows, and its reads and pointers then fail with errors that name the addresses.
 *
 * @module
 */

import { FEATURE_LA57 } from "../../protocol/mod.ts";
import { AddressSpace, type KAddr, type RegionBase } from "../memory/mod.ts";

/** The kernel variables that hold the bases of a 5-level guest's regions, direct map first. */
export const REGION_BASES = ["page_offset_base", "vmalloc_base", "vmemmap_base"] as const;

/** How {@linkcode learnAddressSpace} asks the guest. */
export interface AddressSpaceSource {
  /** The HELLO features of the guest's agent. */
  features: readonly string[];
  /** Kernel symbols (window 0 KAddrs), undefined for one the guest does not give. */
  symbols(names: readonly string[]): Promise<Map<string, KAddr | undefined>>;
  /** Reads `len` bytes of the guest's kernel at `addr` (one round trip). */
  read(addr: bigint, len: number): Promise<Uint8Array>;
}

/**
 * The guest says where its regions are in a way no kernel would, or cannot read what it says:
 * its agent misbehaves. (A kallsyms without the bases is a plain `Error`: such a guest is not
 * supported, it does not lie.)
 */
export class AddressSpaceError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "AddressSpaceError";
  }
}

/** Widest span of kernel data read in one READ for the bases (they sit side by side). */
const ONE_READ = 4096;

/**
 * The guest's address space: {@linkcode AddressSpace.FOUR_LEVEL} without asking anything when
 * its agent does not report 5-level paging; else made from the three bases (one round trip for
 * the symbols, one or more for their values).
 * @throws {Error} when the guest's kallsyms does not give a base's address.
 * @throws {AddressSpaceError} when a base cannot be read, or is refused.
 */
export async function learnAddressSpace(source: AddressSpaceSource): Promise<AddressSpace> {
  if (!source.features.includes(FEATURE_LA57)) return AddressSpace.FOUR_LEVEL;
  const what = "Cannot learn the guest's 5-level address space";
  const fail = (reason: string, cause: unknown) =>
    new AddressSpaceError(`${what}: ${reason}`, { cause });
  const found = await source.symbols(REGION_BASES);
  const at = REGION_BASES.map((name) => {
    const k = found.get(name);
    if (k === undefined) throw new Error(`${what}: its kallsyms does not give "${name}"`);
    return AddressSpace.FOUR_LEVEL.fromKAddr(k);
  });
  const first = at.reduce((a, b) => (b < a ? b : a));
  const end = at.reduce((a, b) => (b > a ? b : a)) + 8n;
  const values = new Map<bigint, bigint>();
  const readAt = async (from: bigint, len: number, name: string) => {
    let bytes: Uint8Array;
    try {
      bytes = await source.read(from, len);
    } catch (error) {
      throw fail(
        `cannot read ${name} at 0x${from.toString(16)}: ${(error as Error).message}`,
        error,
      );
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (const a of at) {
      if (a >= from && a + 8n <= from + BigInt(len)) {
        values.set(a, view.getBigUint64(Number(a - from), true));
      }
    }
  };
  if (end - first <= ONE_READ) await readAt(first, Number(end - first), REGION_BASES.join(", "));
  else for (const [i, a] of at.entries()) await readAt(a, 8, REGION_BASES[i]);
  const bases: RegionBase[] = REGION_BASES.map((name, i) => ({ name, value: values.get(at[i])! }));
  try {
    return AddressSpace.fiveLevel(bases);
  } catch (error) {
    throw new AddressSpaceError((error as Error).message, { cause: error });
  }
}
