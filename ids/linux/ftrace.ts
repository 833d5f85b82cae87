/**
 * The ftrace callbacks the guest kernel calls on function entry: the `ftrace_ops_list` (a
 * singly linked list of `struct ftrace_ops` through `next`, ending at `ftrace_list_end`, both
 * from kallsyms), each ops with its callback `func`, its `flags`, and the functions its filter
 * selects (`func_hash->filter_hash`: a `struct ftrace_hash` of `1 << size_bits` hlist buckets
 * of `ftrace_func_entry`s, `count` entries in all; an empty hash means every function). The
 * `ftrace_hook` rule (ids/detect/ftrace_hook.ts) names the owner of each callback.
 *
 * Functions are reported by address (`ip`): naming them needs the guest's text symbols by
 * address, which the IDS does not have.
 *
 * The walk is bounded (ops, `size_bits` <= 16, entries <= `count` <= 65536), detects cycles and
 * reports how it ended. The plan prefetches the buckets as an array of `count` heads: a hash in
 * use was sized from its count (`2^fls(count/2)` buckets, never more than `count`), so that
 * covers every bucket; a larger one is read on demand.
 *
 * @module
 */

import type { Btf } from "../btf/mod.ts";
import {
  type AddressSpace,
  follow,
  type GuestMemory,
  type KAddr,
  type Pointer,
} from "../memory/mod.ts";
import {
  LayoutError,
  type PlanBuilder,
  ptr,
  readStruct,
  resolveLayout,
  uint,
} from "../kernel/mod.ts";
import type { ScanContext, Section, Source } from "../detect/mod.ts";
import { type AddressRange, hex64 } from "./address_owner.ts";
import { planKernelImage } from "./_kernel_image.ts";

/** The functions one ops filters on. */
export interface FtraceFilter {
  /** Entries the hash says it holds; 0: the ops traces every function. */
  count: number;
  /** Their addresses, in bucket order. */
  ips: string[];
  /** Set when the hash could not be read whole. */
  error?: string;
}

/** One registered `struct ftrace_ops`. */
export interface FtraceOpsEntry {
  /** Address of the ops. */
  ops: string;
  /** Its callback (`func`). */
  callback: string;
  flags: number;
  filter: FtraceFilter;
}

/** The `ftrace` section. */
export interface FtraceOps {
  ops: FtraceOpsEntry[];
  /** Core kernel text, [_stext, _etext). */
  core: AddressRange[];
  truncated: boolean;
  reason?: string;
}

/** Options of {@linkcode readFtraceOps} and {@linkcode planFtraceOps}. */
export interface FtraceOptions {
  /** Most ops visited. @default 4096 */
  maxOps?: number;
  /** Most entries of one filter. @default 65536 */
  maxEntries?: number;
}

/** Largest `size_bits` of a hash the walk reads (the kernel's own maximum is 12). */
export const MAX_SIZE_BITS = 16;

/** Resolves the structures of the ops list. @throws {LayoutError} naming what is missing. */
export function resolveFtraceTypes(btf: Btf) {
  return {
    ops: resolveLayout(btf, "ftrace_ops", {
      func: ptr("func"),
      next: ptr("next"),
      flags: uint("flags"),
      funcHash: ptr("func_hash"),
      /** Where `func_hash` points for every ops but those sharing another's hashes. */
      localFilter: ptr("local_hash.filter_hash"),
    }),
    /** Offset of `local_hash` in ftrace_ops. */
    localHashOffset: btf.field("ftrace_ops", "local_hash").offset,
    opsHash: resolveLayout(btf, "ftrace_ops_hash", { filter: ptr("filter_hash") }),
    hash: resolveLayout(btf, "ftrace_hash", {
      sizeBits: uint("size_bits"),
      buckets: ptr("buckets"),
      count: uint("count"),
    }),
    entry: resolveLayout(btf, "ftrace_func_entry", { next: ptr("hlist.next"), ip: ptr("ip") }),
    /** Offset of `hlist` in ftrace_func_entry: a chain node minus this is its entry. */
    hlistOffset: btf.field("ftrace_func_entry", "hlist").offset,
  };
}

/** The resolved ftrace structures of one guest kernel. */
export type FtraceTypes = ReturnType<typeof resolveFtraceTypes>;

/** Where the list is in one guest. */
export interface FtraceAnchors {
  /** `ftrace_ops_list`: the pointer to the first ops. */
  list: KAddr;
  /** `ftrace_list_end`: the ops that ends the list. */
  end: KAddr;
}

/** Adds to `b` what {@linkcode readFtraceOps} reads: one root, four nodes. */
export function planFtraceOps(
  b: PlanBuilder,
  types: FtraceTypes,
  anchors: FtraceAnchors,
  options: FtraceOptions = {},
): void {
  const image = planKernelImage(b, [{ name: "ftrace_ops_list", at: anchors.list, len: 8 }])!;
  const ops = b.node(types.ops);
  const hash = b.node(types.hash);
  const entry = b.node(types.entry);
  b.ptr(image.node, "ftrace_ops_list", ops);
  b.ptr(ops, "next", ops);
  // func_hash is &ops->local_hash (ftrace_ops_init) unless the ops shares another's hashes,
  // whose filter is then read on demand: one node fewer in a plan shared by every source.
  b.ptr(ops, "localFilter", hash);
  b.array(hash, "buckets", "count", entry, {
    stride: 8,
    elem: "hlist",
    delta: types.hlistOffset,
    max: options.maxEntries ?? 65536,
  });
}

const pointerText = (p: Pointer, space: AddressSpace) =>
  p === null ? hex64(0n) : typeof p === "number" ? space.hex(p) : p.value;

async function readFilter(
  mem: GuestMemory,
  types: FtraceTypes,
  funcHash: Pointer,
  maxEntries: number,
): Promise<FtraceFilter> {
  const filter: FtraceFilter = { count: 0, ips: [] };
  try {
    if (funcHash === null) return filter;
    const { filter: hashPtr } = await readStruct(mem, follow(funcHash, "func_hash"), types.opsHash);
    if (hashPtr === null) return filter;
    const at = follow(hashPtr, "func_hash->filter_hash");
    const hash = await readStruct(mem, at, types.hash);
    filter.count = hash.count;
    if (hash.count === 0) return filter;
    if (hash.sizeBits > MAX_SIZE_BITS) {
      throw new RangeError(
        `size_bits ${hash.sizeBits} of hash ${mem.space.hex(at)} is above ${MAX_SIZE_BITS}`,
      );
    }
    if (hash.count > maxEntries) {
      throw new RangeError(
        `count ${hash.count} of hash ${mem.space.hex(at)} is above ${maxEntries}`,
      );
    }
    const buckets = 2 ** hash.sizeBits;
    const heads = await mem.read(
      mem.space.follow(hash.buckets, "buckets of hash", at),
      buckets * 8,
    );
    const view = new DataView(heads.buffer, heads.byteOffset, heads.byteLength);
    const seen = new Set<KAddr>();
    for (let i = 0; i < buckets; i++) {
      let next = mem.space.pointerAt(view, i * 8);
      while (next !== null) {
        const node = follow(next, `bucket ${i} of hash ${mem.space.hex(at)}`);
        if (seen.has(node)) throw new RangeError(`bucket ${i} of hash ${mem.space.hex(at)} loops`);
        if (seen.size >= hash.count) {
          throw new RangeError(
            `hash ${mem.space.hex(at)} holds more entries than its count ${hash.count}`,
          );
        }
        seen.add(node);
        const entry = await readStruct(mem, node - types.hlistOffset, types.entry);
        filter.ips.push(pointerText(entry.ip, mem.space));
        next = entry.next;
      }
    }
    if (seen.size < hash.count) {
      throw new RangeError(
        `hash ${mem.space.hex(at)} holds ${seen.size} entries, not its count ${hash.count}`,
      );
    }
  } catch (error) {
    filter.error = (error as Error).message;
  }
  return filter;
}

/**
 * Reads the ops list. Never throws for what guest memory holds: a broken list ends the walk,
 * reported as truncated with the reason; a hash that cannot be read is its ops' filter error.
 */
export async function readFtraceOps(
  mem: GuestMemory,
  types: FtraceTypes,
  anchors: FtraceAnchors,
  core: AddressRange[],
  options: FtraceOptions = {},
): Promise<FtraceOps> {
  const maxOps = options.maxOps ?? 4096;
  const maxEntries = options.maxEntries ?? 65536;
  const out: FtraceOps = { ops: [], core, truncated: false };
  const stop = (reason: string) => {
    out.truncated = true;
    out.reason = reason;
    return out;
  };
  let next: Pointer;
  try {
    const slot = await mem.read(anchors.list, 8);
    next = mem.space.pointerAt(new DataView(slot.buffer, slot.byteOffset, 8), 0);
  } catch (error) {
    return stop((error as Error).message);
  }
  let from = "ftrace_ops_list";
  const seen = new Set<KAddr>();
  for (;;) {
    let at: KAddr;
    try {
      at = follow(next, `next of ${from}`);
    } catch (error) {
      return stop((error as Error).message);
    }
    if (at === anchors.end) return out;
    if (seen.has(at)) return stop(`the ftrace ops list loops back to ${mem.space.hex(at)}`);
    if (seen.size >= maxOps) return stop(`more than ${maxOps} ftrace ops`);
    seen.add(at);
    let ops;
    try {
      ops = await readStruct(mem, at, types.ops);
    } catch (error) {
      return stop(
        `ftrace ops ${mem.space.hex(at)}, linked from ${from}: ${(error as Error).message}`,
      );
    }
    out.ops.push({
      ops: mem.space.hex(at),
      callback: pointerText(ops.func, mem.space),
      flags: ops.flags,
      filter: await readFilter(mem, types, ops.funcHash, maxEntries),
    });
    next = ops.next;
    from = `ftrace ops ${mem.space.hex(at)}`;
  }
}

/** The symbols {@linkcode ftraceSource} asks for. */
export const FTRACE_SYMBOLS = ["ftrace_ops_list", "ftrace_list_end", "_stext", "_etext"] as const;

type Resolved = { ok: FtraceTypes } | { reason: string };
const typesOf = new WeakMap<Btf, Resolved>();

function ftraceTypes(btf: Btf): Resolved {
  let types = typesOf.get(btf);
  if (!types) {
    try {
      types = { ok: resolveFtraceTypes(btf) };
    } catch (error) {
      if (!(error instanceof LayoutError) && (error as Error).name !== "BtfError") throw error;
      types = { reason: `the guest kernel has no ftrace: ${(error as Error).message}` };
    }
    typesOf.set(btf, types);
  }
  return types;
}

function anchorsOf(ctx: ScanContext): { anchors: FtraceAnchors; core: AddressRange[] } | string {
  const sym = (name: string) => ctx.symbols.get(name) || undefined;
  for (const name of FTRACE_SYMBOLS) {
    if (sym(name) === undefined) return `kallsyms does not give the address of "${name}"`;
  }
  return {
    anchors: { list: sym("ftrace_ops_list")!, end: sym("ftrace_list_end")! },
    core: [{ start: ctx.space.hex(sym("_stext")!), end: ctx.space.hex(sym("_etext")!) }],
  };
}

/** The source of the `ftrace` section. */
export const ftraceSource: Source<"ftrace"> = {
  name: "ftrace",
  symbols: FTRACE_SYMBOLS,
  plan(b, ctx) {
    const types = ftraceTypes(ctx.btf);
    const where = anchorsOf(ctx);
    if ("ok" in types && typeof where !== "string") planFtraceOps(b, types.ok, where.anchors);
  },
  async read(memory, ctx): Promise<Section<FtraceOps>> {
    const types = ftraceTypes(ctx.btf);
    if (!("ok" in types)) return { supported: false, reason: types.reason };
    const where = anchorsOf(ctx);
    if (typeof where === "string") return { supported: false, reason: where };
    const value = await readFtraceOps(memory, types.ok, where.anchors, where.core);
    return {
      supported: true,
      value,
      truncated: value.truncated,
      ...(value.reason ? { reason: value.reason } : {}),
    };
  },
};
