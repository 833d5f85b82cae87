/**
 * Synthetic guest memory for unit tests of the views: kernel objects laid out with the offsets
 * of a real kernel's BTF, written into a {@linkcode MemoryCache}. Pure code, no agent.
 *
 * @module
 */

import { AddressSpace, type KAddr, MemoryCache } from "../../memory/mod.ts";
import type { StructLayout } from "../../kernel/mod.ts";
import type { KernelTypes } from "../mod.ts";
import { type NamespaceSpec, SyntheticNamespaces } from "./namespaces.ts";

/**
 * Field values to write: numbers, strings, KAddr pointers, null, a raw 64-bit value (pointers
 * and integers), or bytes (raw fields).
 */
export type FieldValues = Record<
  string,
  number | string | null | { raw: bigint } | bigint | Uint8Array
>;

/**
 * Writes `values` into `bytes`, which holds a struct of `layout` at `base`; KAddr pointers are
 * written as `space` numbers them.
 */
export function encodeInto(
  bytes: Uint8Array,
  base: number,
  layout: StructLayout<unknown>,
  values: FieldValues,
  space: AddressSpace = AddressSpace.FOUR_LEVEL,
): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (const [name, value] of Object.entries(values)) {
    const f = layout.fields.find((f) => f.name === name);
    if (!f) throw new TypeError(`Layout of "${layout.struct}" has no field "${name}"`);
    const at = base + f.offset;
    if (value instanceof Uint8Array) {
      bytes.set(value.subarray(0, f.size), at);
    } else if (f.kind === "str") {
      bytes.fill(0, at, at + f.size);
      bytes.set(new TextEncoder().encode(String(value)).subarray(0, f.size - 1), at);
    } else if (f.kind === "ptr") {
      const raw = value === null
        ? 0n
        : typeof value === "object"
        ? value.raw
        : typeof value === "bigint"
        ? value
        : space.fromKAddr(value as number);
      view.setBigUint64(at, raw, true);
    } else {
      const v = typeof value === "object" && value !== null ? value.raw : value;
      const n = BigInt.asUintN(f.size * 8, BigInt(v as number | bigint));
      for (let i = 0; i < f.size; i++) view.setUint8(at + i, Number((n >> BigInt(8 * i)) & 0xffn));
    }
  }
}

/** Encodes `values` into a zeroed struct image of the layout's full size. */
export function encodeStruct(layout: StructLayout<unknown>, values: FieldValues): Uint8Array {
  const bytes = new Uint8Array(layout.size);
  encodeInto(bytes, 0, layout, values);
  return bytes;
}

/** A task to lay out, with its namespaces, cgroup and threads. */
export interface TaskSpec extends NamespaceSpec {
  pid: number;
  comm: string;
  uid?: number;
  gid?: number;
  /** Index into the task list of the parent; init_task when absent. */
  parent?: number;
  kthread?: boolean;
  state?: number;
  /** Its effective, permitted and inheritable capabilities. @default 0n */
  caps?: bigint;
  /** It shares init_task's cred (a kernel thread, or a process that never changed its cred). */
  initCred?: boolean;
}

interface Placed {
  at: KAddr;
  size: number;
  layout?: StructLayout<unknown>;
  values?: FieldValues;
  bytes?: Uint8Array;
}

/** Where the tasks go on a 4-level guest: 0xffff888800000000, in the direct map. */
const FOUR_LEVEL_BASE = 0x0888_0000_0000;
/** Where they go in a 5-level guest's direct map: as far into it as on a 4-level guest. */
const DIRECT_MAP_OFFSET = 0x0008_0000_0000;
/** Where placed objects go, from the tasks: after them, their creds and init_task's cred. */
const HEAP = 0x0100_0000;

/** Options of {@linkcode SyntheticKernel}. */
export interface SyntheticOptions {
  /**
   * The guest's address space: a 5-level one puts the tasks and the heap in its direct map
   * (its first window below the 4-level half), init_task in the kernel image either way.
   * @default {@linkcode AddressSpace.FOUR_LEVEL}
   */
  space?: AddressSpace;
}

/**
 * A kernel image: init_task plus `tasks`, each with its cred, linked in a circular `tasks`
 * list, at plausible direct-map addresses; and any other objects a test places. `mutate` lets a
 * test corrupt fields before use. Objects that overlap (a struct inside another) are written
 * into one extent; objects apart stay apart, so a removed one is really missing.
 */
export class SyntheticKernel {
  readonly cache = new MemoryCache();
  /** How the image's addresses are numbered. */
  readonly space: AddressSpace;
  readonly initTask: KAddr;
  readonly initCred: KAddr;
  readonly tasks: KAddr[];
  readonly creds: KAddr[];
  /** Every task's pid, signal, nsproxy, css_set and threads. */
  readonly ns: SyntheticNamespaces;
  #types: KernelTypes;
  #objects: Placed[] = [];
  #next: KAddr;

  constructor(types: KernelTypes, tasks: TaskSpec[], options: SyntheticOptions = {}) {
    this.#types = types;
    this.space = options.space ?? AddressSpace.FOUR_LEVEL;
    const stride = Math.ceil(types.task.size / 64) * 64 + 64;
    const directMap = this.space.windows[1];
    const base = directMap
      ? this.space.parseKAddr(directMap.start)! + DIRECT_MAP_OFFSET
      : FOUR_LEVEL_BASE;
    this.#next = base + HEAP;
    this.initTask = 0x7f00_0000_0000 + 0x1000_0000; // ffffffff... kernel image, like the real one
    this.tasks = tasks.map((_, i) => base + 0x10_0000 + i * stride);
    this.creds = tasks.map((_, i) => base + 0x80_0000 + i * 256);
    this.initCred = base + 0x90_0000;
    const all = [this.initTask, ...this.tasks];
    this.ns = new SyntheticNamespaces(this, types);
    all.forEach((at, i) => {
      const spec: TaskSpec = i === 0 ? { pid: 0, comm: "swapper/0", kthread: true } : tasks[i - 1];
      const parent = spec.parent === undefined ? this.initTask : this.tasks[spec.parent];
      const cred = i === 0 || spec.initCred ? this.initCred : this.creds[i - 1];
      this.place(types.task, {
        pid: spec.pid,
        tgid: spec.pid,
        state: spec.state ?? 1,
        exitState: 0,
        flags: spec.kthread ? 0x0020_0000 : 0,
        comm: spec.comm,
        realParent: i === 0 ? this.initTask : parent,
        realCred: cred,
        tasksNext: all[(i + 1) % all.length] + types.tasksOffset,
        files: null,
        nsproxy: null,
      }, { at });
      this.ns.task(at, spec.pid, spec);
      if (i > 0 && spec.initCred) return;
      const ids = { uid: spec.uid ?? 0, gid: spec.gid ?? 0 };
      const caps = spec.caps ?? (i === 0 ? 0x1ff_ffff_ffffn : 0n);
      this.place(types.cred, {
        uid: ids.uid,
        euid: ids.uid,
        suid: ids.uid,
        fsuid: ids.uid,
        gid: ids.gid,
        egid: ids.gid,
        sgid: ids.gid,
        fsgid: ids.gid,
        capEffective: { raw: caps },
        capPermitted: { raw: caps },
        capInheritable: { raw: 0n },
      }, { at: cred });
    });
  }

  /**
   * Places a struct of `layout` with `values` (the rest zero) at `at`, or at a fresh address of
   * the heap, `prefix` bytes into a zeroed allocation (as a struct embedded in a larger one).
   * Returns its address.
   */
  place(
    layout: StructLayout<unknown>,
    values: FieldValues,
    options: { at?: KAddr; prefix?: number } = {},
  ): KAddr {
    const prefix = options.prefix ?? 0;
    const start = options.at === undefined ? this.#alloc(prefix + layout.size) : options.at;
    if (prefix) this.#objects.push({ at: start, size: prefix, bytes: new Uint8Array(prefix) });
    const at = start + prefix;
    this.#objects.push({ at, size: layout.size, layout, values: { ...values } });
    return at;
  }

  /** Places raw bytes at `at`, or at a fresh address of the heap; returns it. */
  placeBytes(bytes: Uint8Array, at?: KAddr): KAddr {
    const where = at ?? this.#alloc(bytes.length);
    this.#objects.push({ at: where, size: bytes.length, bytes });
    return where;
  }

  #alloc(size: number): KAddr {
    const at = this.#next;
    this.#next += Math.ceil(size / 64) * 64 + 64;
    return at;
  }

  /**
   * Changes fields of the object at `at` before {@linkcode build}. Each field goes to the last
   * object placed there whose layout has it.
   */
  mutate(at: KAddr, values: FieldValues): this {
    const here = this.#objects.filter((o) => o.at === at && o.layout);
    if (here.length === 0) throw new TypeError(`No synthetic object at offset ${at}`);
    for (const [name, value] of Object.entries(values)) {
      const target = here.findLast((o) => o.layout!.fields.some((f) => f.name === name));
      if (!target) throw new TypeError(`No synthetic object at ${at} has a field "${name}"`);
      target.values![name] = value;
    }
    return this;
  }

  /** Leaves every object at `at` out of the image. */
  remove(at: KAddr): this {
    this.#objects = this.#objects.filter((o) => o.at !== at);
    return this;
  }

  /** Writes every object into the cache and returns it. */
  build(): MemoryCache {
    const sorted = [...this.#objects].sort((a, b) => a.at - b.at);
    for (let i = 0; i < sorted.length;) {
      const start = sorted[i].at;
      let end = start + sorted[i].size;
      let j = i + 1;
      while (j < sorted.length && sorted[j].at < end) {
        end = Math.max(end, sorted[j].at + sorted[j++].size);
      }
      const extent = new Uint8Array(end - start);
      // Write in placement order, so a later object overrides an earlier one where they overlap.
      for (const o of this.#objects) {
        if (o.at < start || o.at >= end) continue;
        if (o.bytes) extent.set(o.bytes, o.at - start);
        else encodeInto(extent, o.at - start, o.layout!, o.values!, this.space);
      }
      this.cache.insert(start, extent);
      i = j;
    }
    return this.cache;
  }

  /** The list-entry address of a task (what `tasks.next` holds). */
  entry(at: KAddr): KAddr {
    return at + this.#types.tasksOffset;
  }
}
