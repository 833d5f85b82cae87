/**
 * Synthetic guest memory for unit tests of the views: kernel objects laid out with the offsets
 * of a real kernel's BTF, written into a {@linkcode MemoryCache}. Pure code, no agent.
 *
 * @module
 */

import { fromKAddr, type KAddr } from "../memory/address.ts";
import { MemoryCache } from "../memory/cache.ts";
import type { StructLayout } from "../kernel/layout.ts";
import type { KernelTypes } from "../kernel/types.ts";

/** Field values to write: numbers, strings, KAddr pointers, null, or a raw 64-bit value. */
export type FieldValues = Record<string, number | string | null | { raw: bigint }>;

/** Encodes `values` into a zeroed struct image of the layout's full size. */
export function encodeStruct(layout: StructLayout<unknown>, values: FieldValues): Uint8Array {
  const bytes = new Uint8Array(layout.size);
  const view = new DataView(bytes.buffer);
  for (const [name, value] of Object.entries(values)) {
    const f = layout.fields.find((f) => f.name === name);
    if (!f) throw new TypeError(`Layout of "${layout.struct}" has no field "${name}"`);
    if (f.kind === "str") {
      bytes.set(new TextEncoder().encode(String(value)).subarray(0, f.size - 1), f.offset);
    } else if (f.kind === "ptr") {
      const raw = value === null
        ? 0n
        : typeof value === "object"
        ? value.raw
        : fromKAddr(value as number);
      view.setBigUint64(f.offset, raw, true);
    } else {
      const n = BigInt.asUintN(f.size * 8, BigInt(value as number));
      for (let i = 0; i < f.size; i++) {
        view.setUint8(f.offset + i, Number((n >> BigInt(8 * i)) & 0xffn));
      }
    }
  }
  return bytes;
}

/** A task to lay out. */
export interface TaskSpec {
  pid: number;
  comm: string;
  uid?: number;
  gid?: number;
  /** Index into the task list of the parent; init_task when absent. */
  parent?: number;
  kthread?: boolean;
  state?: number;
}

/**
 * A kernel image: init_task plus `tasks`, each with its cred, linked in a circular `tasks`
 * list, at plausible direct-map addresses. `mutate` lets a test corrupt fields before use.
 */
export class SyntheticKernel {
  readonly cache = new MemoryCache();
  readonly initTask: KAddr;
  readonly tasks: KAddr[];
  readonly creds: KAddr[];
  #types: KernelTypes;
  #values = new Map<KAddr, { layout: StructLayout<unknown>; values: FieldValues }>();

  constructor(types: KernelTypes, tasks: TaskSpec[]) {
    this.#types = types;
    const stride = Math.ceil(types.task.size / 64) * 64 + 64;
    const base = 0x0888_0000_0000; // ffff888800000000: the x86-64 direct map
    this.initTask = 0x7f00_0000_0000 + 0x1000_0000; // ffffffff... kernel image, like the real one
    this.tasks = tasks.map((_, i) => base + 0x10_0000 + i * stride);
    this.creds = tasks.map((_, i) => base + 0x80_0000 + i * 256);
    const all = [this.initTask, ...this.tasks];
    const rootCred = base + 0x90_0000;
    all.forEach((at, i) => {
      const spec: TaskSpec = i === 0 ? { pid: 0, comm: "swapper/0", kthread: true } : tasks[i - 1];
      const parent = spec.parent === undefined ? this.initTask : this.tasks[spec.parent];
      const cred = i === 0 ? rootCred : this.creds[i - 1];
      this.#values.set(at, {
        layout: types.task,
        values: {
          pid: spec.pid,
          tgid: spec.pid,
          state: spec.state ?? 1,
          exitState: 0,
          flags: spec.kthread ? 0x0020_0000 : 0,
          comm: spec.comm,
          realParent: i === 0 ? this.initTask : parent,
          realCred: cred,
          tasksNext: all[(i + 1) % all.length] + types.tasksOffset,
        },
      });
      const ids = { uid: spec.uid ?? 0, gid: spec.gid ?? 0 };
      this.#values.set(cred, {
        layout: types.cred,
        values: {
          uid: ids.uid,
          euid: ids.uid,
          suid: ids.uid,
          fsuid: ids.uid,
          gid: ids.gid,
          egid: ids.gid,
          sgid: ids.gid,
          fsgid: ids.gid,
        },
      });
    });
  }

  /** Changes fields of the object at `at` before {@linkcode build}. */
  mutate(at: KAddr, values: FieldValues): this {
    const entry = this.#values.get(at);
    if (!entry) throw new TypeError(`No synthetic object at offset ${at}`);
    Object.assign(entry.values, values);
    return this;
  }

  /** Leaves the object at `at` out of the image. */
  remove(at: KAddr): this {
    this.#values.delete(at);
    return this;
  }

  /** Writes every object into the cache and returns it. */
  build(): MemoryCache {
    for (const [at, { layout, values }] of this.#values) {
      this.cache.insert(at, encodeStruct(layout, values));
    }
    return this.cache;
  }

  /** The list-entry address of a task (what `tasks.next` holds). */
  entry(at: KAddr): KAddr {
    return at + this.#types.tasksOffset;
  }
}
