/**
 * Fuzz target of the agent's check of a BPF object (`agent/bpf_check.ts`), which reads the ELF
 * bytes a LOAD carries before libbpf sees them: this machine's `bpf/out/walk.bpf.o` with fields
 * rewritten, bytes flipped, cut short or repeated, and ELF-headed noise.
 *
 * @module
 */

import fc from "fast-check";
import { checkObject, ObjectRefused } from "../../agent/mod.ts";
import { inPlace, mutate, mutation, noise } from "./_inputs.ts";
import type { FuzzTarget } from "./types.ts";

const WALK_OBJECT = new URL("../../bpf/out/walk.bpf.o", import.meta.url);
let object: Uint8Array | undefined;

/** The project's walker object (`deno task build:bpf` builds it), read once. */
function walkObject(): Uint8Array {
  return object ??= Deno.readFileSync(WALK_OBJECT);
}

/** Rewrites of the ELF's header and section header fields: offsets, sizes, counts, links. */
const headerWrite = fc.record({
  section: fc.nat({ max: 40 }),
  field: fc.constantFrom(0, 4, 24, 32, 40, 44),
  value: fc.oneof(fc.nat({ max: 0xffff_ffff }), fc.integer({ min: 0, max: 64 })),
});

export const bpfObjects: FuzzTarget<Uint8Array> = {
  name: "bpf-object",
  description: "checkObject over mutated walk.bpf.o and ELF-headed noise",
  arbitrary: fc.oneof(
    fc.array(inPlace, { minLength: 1, maxLength: 8 }).map((ms) => mutate(walkObject(), ms)),
    fc.array(mutation, { minLength: 1, maxLength: 3 }).map((ms) => mutate(walkObject(), ms)),
    fc.array(headerWrite, { minLength: 1, maxLength: 4 }).map((writes) => {
      const bytes = walkObject().slice();
      const view = new DataView(bytes.buffer);
      const shoff = Number(view.getBigUint64(0x28, true));
      for (const w of writes) {
        const at = shoff + w.section * 64 + w.field;
        if (at + 4 <= bytes.length) view.setUint32(at, w.value, true);
      }
      return bytes;
    }),
    fc.record({ seed: fc.integer(), size: fc.integer({ min: 0, max: 4096 }) }).map(
      ({ seed, size }) => {
        const bytes = noise(seed, size);
        bytes.set([0x7f, 0x45, 0x4c, 0x46, 2, 1].slice(0, bytes.length));
        return bytes;
      },
    ),
  ),
  run(bytes) {
    checkObject(bytes);
  },
  expected: (error) => error instanceof ObjectRefused,
};
