/**
 * What makes a BPF object a walker, and loading one: the check (`bpf_check.ts`) and libbpf's own
 * reading of the object must agree, the object must have every walker program, its `.rodata` and
 * map sizes come from {@linkcode WalkerOptions}, and once loaded each of its programs is attached
 * to the trigger. What a loaded walker does is `walker.ts`'s.
 *
 * @module
 */

import { kernelHalf } from "./_kernel_facts.ts";
import { CONFIG, CONFIG_SIZE } from "./_walk_layout.ts";
import { checkObject } from "./bpf_check.ts";
import { BpfObject, TRIGGER } from "./libbpf.ts";
import { ObjectRefused } from "./object_refused.ts";

/** The programs a walker object must have (it may have more: every one is attached). */
export const WALKER_PROGRAMS = ["read_memory", "walk_tasks", "report_anchor", "walk_plan"] as const;

/** The kernel's program type of uprobes (BPF_PROG_TYPE_KPROBE). */
const PROG_TYPE_KPROBE = 2;

/**
 * The default of {@linkcode WalkerOptions.ringBytes}: a READ as long as the protocol allows
 * (`LIMITS.maxRead`, 256 records of a page and their headers) fits whole, and a walk that needs
 * more is resumed (`Walker.resume`). The ring's pages are guest kernel memory, which
 * the agent maps twice (a record that wraps around the end reads as one): its RSS counts them
 * twice.
 */
export const DEFAULT_RING_BYTES = 2 << 20;

/** Where the compiled object is, for `deno run` and inside a `deno compile` binary alike. */
export const WALK_OBJECT = new URL("../bpf/out/walk.bpf.o", import.meta.url);

/** Options of `Walker.open`: how the walker object is loaded and sized. */
export interface WalkerOptions {
  /**
   * Size of the ring buffer in bytes; a power of two, multiple of the page size. A walk that
   * copies more than it holds is resumed once it is drained (`Walker.resume`), so the
   * ring bounds how much of an answer is held at once, not how large it may be.
   * @default {@linkcode DEFAULT_RING_BYTES} (2 MiB)
   */
  ringBytes?: number;
  /**
   * Items the plan walker's work stack holds (24 bytes each). A plan needs at most 3 per level of
   * depth plus 3 (195 at the deepest); fewer stop deep walks with STACK_FULL. @default 256
   */
  stackItems?: number;
  /**
   * Slots of the table in which the plan walker remembers, per walk, the objects of nodes that
   * dedupe: a power of two, direct-mapped, 24 bytes a slot, allocated at load (6 MiB by
   * default). Objects whose slots collide may be copied twice.
   * @default 262144
   */
  dedupeEntries?: number;
  /**
   * The compiled object; read from {@linkcode WALK_OBJECT} when absent. It is checked first
   * (`agent/bpf_check.ts`): program types and helpers.
   */
  object?: Uint8Array;
  /**
   * The first address of the kernel half: the plan walker reads and follows nothing below it.
   * @default this kernel's, for its paging mode (`KERNEL_HALF`, or `KERNEL_HALF_LA57` with
   * 5-level paging)
   */
  kernelHalf?: bigint;
}

/**
 * Checks, opens, configures, loads and attaches a walker object (`options.object`, else
 * {@linkcode WALK_OBJECT}), for this process only: every program of the object is attached to the
 * trigger (uprobe or uretprobe, as its section says). The caller owns what it returns.
 * @throws {ObjectRefused} when the check refuses the object, or it is not a walker.
 * @throws {LibbpfError} when the kernel refuses (no BPF permission, verifier, no uprobes).
 */
export async function loadWalkerObject(options: WalkerOptions): Promise<BpfObject> {
  const elf = options.object ?? await Deno.readFile(WALK_OBJECT);
  const checked = checkObject(elf);
  using stack = new DisposableStack();
  const obj = stack.use(BpfObject.open(elf, "walk"));
  // libbpf's own reading of the object must agree with the check's: the programs it will load
  // are uprobes, each in a section the check read.
  const kinds = new Map(checked.sections.map((s) => [s.section, s.kind]));
  const programs = obj.programs();
  for (const p of programs) {
    if (p.type !== PROG_TYPE_KPROBE || !kinds.has(p.section)) {
      throw new ObjectRefused(
        `Cannot load the object: libbpf reads program "${p.name}" in section "${p.section}" as a ${p.typeName} program the check did not pass`,
      );
    }
  }
  for (const name of WALKER_PROGRAMS) {
    if (!programs.some((p) => p.name === name)) {
      throw new ObjectRefused(
        `Cannot use the object as a walker: it has no program "${name}" (a walker has ${
          WALKER_PROGRAMS.join(", ")
        })`,
      );
    }
  }
  const config = new Uint8Array(CONFIG_SIZE);
  const seenSlots = positive(options.dedupeEntries ?? 1 << 18, "dedupeEntries");
  if ((seenSlots & (seenSlots - 1)) !== 0) {
    throw new RangeError(`dedupeEntries must be a power of two, not ${seenSlots}`);
  }
  const settings = new DataView(config.buffer);
  settings.setUint32(CONFIG.agentTgid, Deno.pid, true);
  settings.setUint32(CONFIG.seenMask, seenSlots - 1, true);
  settings.setBigUint64(CONFIG.kernelMin, options.kernelHalf ?? await kernelHalf(), true);
  obj.setGlobals(".rodata", config);
  obj.setMaxEntries("records", options.ringBytes ?? DEFAULT_RING_BYTES);
  obj.setMaxEntries("plan_stack", positive(options.stackItems ?? 256, "stackItems"));
  obj.setMaxEntries("plan_seen", seenSlots);
  obj.load();
  for (const p of programs) {
    const retprobe = kinds.get(p.section) === "uretprobe";
    obj.attachUprobe(p.name, { pid: Deno.pid, ...TRIGGER, retprobe });
  }
  stack.move();
  return obj;
}

function positive(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1 || value > 0xffff_ffff) {
    throw new RangeError(`Cannot size the walker: ${name} ${value} is not a positive u32`);
  }
  return value;
}
