/**
 * Fuzz target of a guest-memory view over hostile images: the process list, walked over a
 * CachedMemory of noise around init_task whose list, parent and cred pointers point at other
 * tasks (sometimes off by a few bytes), at creds, or anywhere; parts of structs missing.
 *
 * @module
 */

import fc from "fast-check";
import { CachedMemory, GuestReadError, MemoryCache } from "../../ids/memory/mod.ts";
import { listProcesses } from "../../ids/linux/mod.ts";
import { kernelTypes, noise, u64 } from "./_inputs.ts";
import { FuzzPropertyError, type FuzzTarget } from "./types.ts";

const SLOTS = 6;
const INIT_TASK = 0x7f00_1000_0000; // ffffffff90000000, in the kernel image as the real one is
const HEAP = 0x0888_0010_0000; // the direct map

/** Where one of a pointer field's choices points. */
type Target =
  | { to: "task"; slot: number; delta: number }
  | { to: "cred"; slot: number }
  | { to: "raw"; value: bigint };

interface TaskImage {
  seed: number;
  /** How many of the task's bytes the image holds (the rest is missing). */
  keep: number;
  tasksNext: Target;
  realParent: Target;
  realCred: Target;
  cred: { seed: number; keep: number } | null;
}

interface Image {
  tasks: TaskImage[];
  extents: { slot: number; offset: number; seed: number; length: number }[];
}

const target: fc.Arbitrary<Target> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      to: fc.constant("task" as const),
      slot: fc.nat({ max: SLOTS - 1 }),
      delta: fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, fc.integer({ min: -64, max: 64 })),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ to: fc.constant("cred" as const), slot: fc.nat({ max: SLOTS - 1 }) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      to: fc.constant("raw" as const),
      value: fc.oneof(u64, fc.constantFrom(0n, 1n, 0x0000_7fff_dead_b000n, 0xffff_ffff_ffff_fff0n)),
    }),
  },
);

const image: fc.Arbitrary<Image> = fc.record({
  tasks: fc.array(
    fc.record({
      seed: fc.integer(),
      keep: fc.oneof(
        { weight: 6, arbitrary: fc.constant(1) },
        fc.double({ min: 0, max: 1, noNaN: true }),
      ),
      tasksNext: target,
      realParent: target,
      realCred: target,
      cred: fc.option(
        fc.record({
          seed: fc.integer(),
          keep: fc.oneof(
            { weight: 6, arbitrary: fc.constant(1) },
            fc.double({ min: 0, max: 1, noNaN: true }),
          ),
        }),
        { freq: 6 },
      ),
    }),
    { minLength: 1, maxLength: SLOTS },
  ),
  extents: fc.array(
    fc.record({
      slot: fc.nat({ max: SLOTS - 1 }),
      offset: fc.integer({ min: -4096, max: 16384 }),
      seed: fc.integer(),
      length: fc.integer({ min: 1, max: 512 }),
    }),
    { maxLength: 3 },
  ),
});

function slotAddress(slot: number): number {
  const stride = Math.ceil(kernelTypes().task.size / 4096) * 4096 + 4096;
  return slot === 0 ? INIT_TASK : HEAP + slot * stride;
}

function credAddress(slot: number): number {
  return HEAP + 0x100_0000 + slot * 4096;
}

function pointer(t: Target): bigint {
  const base = 0xffff_0000_0000_0000n;
  if (t.to === "raw") return t.value;
  if (t.to === "cred") return base + BigInt(credAddress(t.slot));
  return base + BigInt(slotAddress(t.slot) + kernelTypes().tasksOffset + t.delta);
}

/** Builds the memory image: noise where each struct is, its pointers where the input says. */
function buildImage(input: Image): MemoryCache {
  const t = kernelTypes();
  const cache = new MemoryCache();
  const field = (name: string) => t.task.fields.find((f) => f.name === name)!.offset;
  input.tasks.forEach((task, slot) => {
    const bytes = noise(task.seed, t.task.size);
    const view = new DataView(bytes.buffer);
    const next = pointer(task.tasksNext);
    view.setBigUint64(t.tasksOffset, next, true);
    view.setBigUint64(field("realParent"), pointer(task.realParent), true);
    view.setBigUint64(field("realCred"), pointer(task.realCred), true);
    if (slot === 0) view.setUint32(field("pid"), 0, true);
    const keep = Math.max(1, Math.floor(bytes.length * task.keep));
    cache.insert(slotAddress(slot), bytes.subarray(0, keep));
    if (task.cred) {
      const cred = noise(task.cred.seed, t.cred.size);
      cache.insert(
        credAddress(slot),
        cred.subarray(0, Math.max(1, Math.floor(cred.length * task.cred.keep))),
      );
    }
  });
  for (const e of input.extents) {
    cache.insert(Math.max(0, slotAddress(e.slot) + e.offset), noise(e.seed, e.length));
  }
  return cache;
}

/** Hostile images; more processes than the image has tasks counts as a crash. */
export const processes: FuzzTarget<Image> = {
  name: "processes",
  description: "listProcesses over CachedMemory images of noise around init_task",
  arbitrary: image,
  async run(input) {
    const list = await listProcesses(
      new CachedMemory(buildImage(input)),
      kernelTypes(),
      INIT_TASK,
      {
        maxTasks: 64,
      },
    );
    if (list.processes.length > SLOTS) {
      throw new FuzzPropertyError(
        `listProcesses returned ${list.processes.length} processes from an image of ${SLOTS} tasks`,
      );
    }
  },
  expected: (error) => error instanceof GuestReadError,
};
