/**
 * The guest the hostile agent pretends to be: synthetic kernel images laid out with the offsets
 * of this machine's BTF (init_task and a few tasks, a 4-level kernel's region bases beside
 * them), one honest and two whose task list lies with memory, and their bytes as READ serves
 * them.
 *
 * @module
 */

import { parseBtf } from "../ids/btf/mod.ts";
import { resolveKernelTypes } from "../ids/linux/mod.ts";
import { AddressSpace, type MemoryCache } from "../ids/memory/mod.ts";
import { SyntheticKernel } from "../ids/linux/testing/mod.ts";

/** The paging of the guest it pretends to be: 4 levels. */
export const space = AddressSpace.FOUR_LEVEL;

/** Memory images the agent serves. */
export interface Images {
  honest: MemoryCache;
  cycle: MemoryCache;
  noncanonical: MemoryCache;
  anchor: bigint;
  /** The region bases of a 4-level kernel, by the addresses of their variables in the images. */
  bases: Map<string, bigint>;
}

/** What a 4-level kernel keeps in its region bases (without KASLR). */
const FOUR_LEVEL_BASES = {
  page_offset_base: 0xffff888000000000n,
  vmalloc_base: 0xffffc90000000000n,
  vmemmap_base: 0xffffea0000000000n,
};

/** This machine's BTF, and images laid out with it. */
export async function makeImages(): Promise<{ btf: Uint8Array<ArrayBuffer>; images: Images }> {
  const btf = await Deno.readFile("/sys/kernel/btf/vmlinux");
  const types = resolveKernelTypes(parseBtf(btf));
  const specs = [
    { pid: 1, comm: "init" },
    { pid: 2, comm: "kthreadd", kthread: true },
    { pid: 100, comm: "sshd", uid: 0 },
    { pid: 200, comm: "worker", uid: 1000, gid: 1000 },
  ];
  const honest = new SyntheticKernel(types, specs);
  const cycle = new SyntheticKernel(types, specs);
  // The last task leads back to the second one: a loop that never reaches init_task again.
  cycle.mutate(cycle.tasks[3], { tasksNext: cycle.entry(cycle.tasks[1]) });
  const noncanonical = new SyntheticKernel(types, specs);
  noncanonical.mutate(noncanonical.tasks[2], { tasksNext: { raw: 0x0000_1234_5678_9000n } });
  // The bases' variables sit side by side in the kernel image, after init_task.
  const bases = new Map<string, bigint>();
  Object.entries(FOUR_LEVEL_BASES).forEach(([name, value], i) => {
    const at = honest.initTask + 0x10_0000 + i * 8;
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setBigUint64(0, value, true);
    honest.placeBytes(bytes, at);
    bases.set(name, space.fromKAddr(at));
  });
  return {
    btf,
    images: {
      honest: honest.build(),
      cycle: cycle.build(),
      noncanonical: noncanonical.build(),
      anchor: space.fromKAddr(honest.tasks[2]),
      bases,
    },
  };
}

/** `len` bytes of `image` at `at`: what is placed there, zeros around it. */
export function readImage(image: MemoryCache, at: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len;) {
    const step = Math.min(8, len - i);
    const bytes = image.get(at + i, step);
    if (bytes) {
      out.set(bytes, i);
      i += step;
      continue;
    }
    const one = image.get(at + i, 1);
    if (one) out[i] = one[0];
    i++;
  }
  return out;
}
