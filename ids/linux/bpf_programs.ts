/**
 * The BPF programs loaded in the guest kernel, from two independent kernel views, cross-checked:
 *
 * - `prog_idr`: the program IDR (`struct idr` → xarray of `struct bpf_prog *`), where kallsyms
 *   gives its address (a kernel with data symbols in kallsyms).
 * - `kallsyms`: the global `bpf_kallsyms` list, on which every JITed program's
 *   `bpf_prog_aux.ksym.lnode` is linked (with trampolines and dispatchers, whose `ksym.prog` is
 *   false). It is reached without any data symbol: from the agent's own task through its fd
 *   table to its own program files (`file->private_data` is the `struct bpf_prog *`), then
 *   around the circular list. The list's global head is one entry inside no program.
 *
 * Every entry of either view is validated by the program's own structures
 * (`aux->prog->aux == aux`, and `ksym.prog` on the list); what fails is dropped and counted.
 * The programs reached from the agent's fds are its own (`own: true`): evidence from memory.
 *
 * What the kernel records and what it does not: a program's maps (`aux->used_maps`) are kept;
 * the helpers it calls are not (the verifier checks them and keeps no list), so none are shown.
 * A program that is not JITed is on no kallsyms list by design: that alone is no anomaly.
 *
 * The race, when both views exist: a program loading (in the IDR a moment before it is linked
 * on the list) or unloading (out of the IDR a moment before it is unlinked) is in one view only.
 * Each such program is re-read through the live guest (`confirm`): one that is being freed
 * (refcount 0, or no longer valid), now linked on the list with consistent neighbours, or now
 * in the IDR, was a race and is counted as such; only what is still missing is `missingFrom`.
 *
 * Guest memory is hostile: the list and the IDR are bounded and checked for cycles, map counts
 * are bounded by the kernel's own limit, and a walk that could not finish is truncated.
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
  type Fields,
  hexOf,
  lookupXarray,
  peekStruct,
  type PlanBuilder,
  planXarray,
  readStruct,
  readXarray,
} from "../kernel/mod.ts";
import type { KernelTypes } from "./kernel_types.ts";
import type { Source } from "../detect/mod.ts";
import { planFdTables, readFdTable } from "./files.ts";
import { type BpfTypes, MAX_USED_MAPS, resolveBpfTypes, typeMask } from "./bpf_types.ts";

export { type BpfTypes, MAX_USED_MAPS, resolveBpfTypes } from "./bpf_types.ts";

/** The kernel views of BPF programs. */
export type BpfView = "prog_idr" | "kallsyms";

/** A map a program uses. */
export interface BpfMap {
  id: number;
  /** `map->name` (at most 15 bytes), as `decodeName()` (kernel/name.ts) maps its bytes. */
  name: string;
  /** The bytes of `name` in hex, when its text does not show them plainly; absent otherwise. */
  nameHex?: string;
  type: string;
  /** Address of its `struct bpf_map`. */
  map: string;
}

/** One BPF program. */
export interface BpfProgram {
  /** `aux->id`, as bpftool shows it. */
  id: number;
  /** `aux->name` (at most 15 bytes), as `decodeName()` (kernel/name.ts) maps its bytes. */
  name: string;
  /**
   * The bytes of `name` in hex, when its text does not show them plainly (an invalid byte, a
   * backslash, a control or invisible character); absent otherwise.
   */
  nameHex?: string;
  /** `prog->tag`, 8 bytes in hex, as bpftool shows it. */
  tag: string;
  /** `prog->type` named from BTF's `enum bpf_prog_type` ("kprobe"), or `type N`. */
  type: string;
  /** `aux->load_time`: nanoseconds since boot. */
  loadTime: number;
  jited: boolean;
  /** The maps it uses (`aux->used_maps`). The kernel records no list of the helpers used. */
  maps: BpfMap[];
  /** Reached from the agent's own fd table: one of the agent's programs. */
  own: boolean;
  /** The views that hold it. */
  seenIn: BpfView[];
  /** Views that exist and, after re-reading the live guest, still do not hold it. */
  missingFrom: BpfView[];
  /** Addresses of its `struct bpf_prog` and `struct bpf_prog_aux`. */
  prog: string;
  aux: string;
  /** Set when some of its fields could not be read. */
  error?: string;
}

/** How one view was read. */
export interface BpfViewStatus {
  supported: boolean;
  truncated: boolean;
  reason?: string;
  /** Entries visited (list entries, IDR entries), valid or not. */
  entries: number;
  /** Entries that are no program (the list head, trampolines, dispatchers, bad entries). */
  dropped: number;
}

/** The programs and how they were found. */
export interface BpfPrograms {
  programs: BpfProgram[];
  views: Record<BpfView, BpfViewStatus>;
  /** JITed subprograms on the list (`aux->id` 0): parts of a program, not listed. */
  subprograms: number;
  /** Programs in one view only that re-reading showed to be loading or unloading. */
  races: number;
  /** Guest reads made to confirm suspicions. */
  confirmReads: number;
  /**
   * Programs in one view only left unconfirmed: more than `maxConfirms` needed it. They are not
   * reported missing (the section is then truncated).
   */
  unconfirmed: number;
  /**
   * The agent's own programs, from its fd table (whether or not a view holds them), and whether
   * that table was read whole.
   */
  agent: { programs: { name: string; tag: string; prog: string }[]; complete: boolean };
}

/** Limits and inputs of {@linkcode listBpfPrograms} and {@linkcode planBpfPrograms}. */
export interface BpfOptions {
  /** The address of `prog_idr`, when kallsyms gives it. */
  progIdr?: KAddr;
  /** Memory that reads the live guest, for confirming suspicions; without it, none are. */
  confirm?: GuestMemory;
  /** Most programs (list entries, IDR entries) visited per view. @default 65536 */
  maxPrograms?: number;
  /** Most fd slots of the agent scanned. @default 65536 */
  maxFds?: number;
  /** Most programs re-read to confirm that a view lacks them. @default 256 */
  maxConfirms?: number;
}

const DEFAULTS = { maxPrograms: 65536, maxFds: 65536, maxConfirms: 256 };

const IS_PROGRAM = { field: "ksymProg", equals: { mask: 0xffn, value: 1n } };

/**
 * Adds to `b` what {@linkcode listBpfPrograms} reads: the agent's task (`anchor`), its fd
 * table, each file's `private_data` as a program and its aux, the `bpf_kallsyms` list from
 * there, each entry's program and maps; and, with `progIdr`, the IDR's xarray and its programs.
 */
export function planBpfPrograms(
  b: PlanBuilder,
  core: KernelTypes,
  types: BpfTypes,
  anchor: KAddr,
  options: BpfOptions = {},
): void {
  const max = options.maxPrograms ?? DEFAULTS.maxPrograms;
  const jitedByte = [{ off: types.jited.offset, len: 1 }];
  const task = b.node(core.task);
  b.root(anchor, task);
  const { file } = planFdTables(b, types.fd, { task }, {
    maxFds: options.maxFds ?? DEFAULTS.maxFds,
  });
  // Any file's private_data is a candidate, read for a type test: copy its fields only (a
  // program-sized copy around a smaller object can run into unmapped memory and fail whole).
  const fdProg = b.node(types.prog, { extra: jitedByte, fieldsOnly: true });
  // Only the declared fields of these are read, in every mode: a whole aux is 1.3 KB, a whole
  // bpf_ksym half a KB of name.
  const fieldsOnly = true;
  const ownAux = b.node(types.aux, { fieldsOnly });
  // The list's entries are programs' (the aux holds the entry's bpf_ksym, so its copy holds the
  // link to the next) and others' (trampolines, dispatchers), of which only the bpf_ksym is
  // copied: an aux-sized copy around one can run into memory that is not mapped.
  const aux = b.node(types.aux, { fieldsOnly, when: IS_PROGRAM });
  const prog = b.node(types.prog, { extra: jitedByte, fieldsOnly });
  const map = b.node(types.map, { fieldsOnly });
  const ksym = b.node(types.ksym, {
    fieldsOnly,
    when: { field: "prog", differs: { mask: 0xffn, value: 1n } },
  });
  // Every file's private_data is read as a program; only a plausible type leads on to an aux,
  // and only a linked program's aux to the list.
  b.ptr(file, "privateData", fdProg);
  const dentry = b.node(types.dentry, { fieldsOnly: true });
  b.ptr(file, "dentry", dentry);
  b.ptr(fdProg, "aux", ownAux, 0, { when: { field: "type", inSet: typeMask(types) } });
  b.list(ownAux, types.lnodeOffset, ksym, types.ksymLnodeOffset, { max, when: IS_PROGRAM });
  b.list(ownAux, types.lnodeOffset, aux, types.lnodeOffset, { max, when: IS_PROGRAM });
  for (const from of [ownAux, aux]) {
    b.ptr(from, "prog", prog, 0, { when: IS_PROGRAM });
    b.array(from, "usedMaps", "usedMapCnt", map, {
      stride: 8,
      max: MAX_USED_MAPS,
      when: IS_PROGRAM,
    });
  }
  b.ptr(prog, "aux", aux);
  if (options.progIdr !== undefined) {
    const idr = b.node(types.idr);
    b.root(options.progIdr, idr);
    planXarray(b, types.xarray, idr, "head", prog);
  }
}

type Aux = Fields<BpfTypes["aux"]>;
type Prog = Fields<BpfTypes["prog"]>;

/** A program whose structures check out. */
interface Found {
  progAt: KAddr;
  auxAt: KAddr;
  prog: Prog;
  aux: Aux;
}

/**
 * The program at `progAt` if its aux points back to it, else undefined; with `allowed`, only
 * a program whose type is a bit of `allowed` (as the plan's condition). Throws on bad reads.
 */
async function readProgram(
  mem: GuestMemory,
  types: BpfTypes,
  progAt: KAddr,
  allowed?: bigint,
): Promise<Found | undefined> {
  const prog = peekStruct(mem, progAt, types.prog) ?? await readStruct(mem, progAt, types.prog);
  if (allowed !== undefined && (prog.type >= 32 || (allowed >> BigInt(prog.type) & 1n) === 0n)) {
    return undefined;
  }
  if (typeof prog.aux !== "number") return undefined;
  const aux = peekStruct(mem, prog.aux, types.aux) ?? await readStruct(mem, prog.aux, types.aux);
  return aux.prog === progAt ? { progAt, auxAt: prog.aux, prog, aux } : undefined;
}

/** The program whose aux is at `auxAt`, if its ksym says program and its prog points back. */
async function readAux(
  mem: GuestMemory,
  types: BpfTypes,
  auxAt: KAddr,
): Promise<Found | undefined> {
  const aux = peekStruct(mem, auxAt, types.aux) ?? await readStruct(mem, auxAt, types.aux);
  if (aux.ksymProg !== 1 || typeof aux.prog !== "number") return undefined;
  const prog = peekStruct(mem, aux.prog, types.prog) ?? await readStruct(mem, aux.prog, types.prog);
  return prog.aux === auxAt ? { progAt: aux.prog, auxAt, prog, aux } : undefined;
}

/** The name of a BPF program's anonymous inode. */
const BPF_PROG_NAME = "bpf-prog";

/** The pointer in the first 8 of `bytes`, as `space` reads it. */
function pointerIn(bytes: Uint8Array, space: AddressSpace): Pointer {
  return space.pointerAt(new DataView(bytes.buffer, bytes.byteOffset, 8), 0);
}

const status = (supported: boolean, reason?: string): BpfViewStatus => ({
  supported,
  truncated: false,
  entries: 0,
  dropped: 0,
  ...(reason ? { reason } : {}),
});

/**
 * Lists the guest's BPF programs from the `bpf_kallsyms` list (reached from the agent's task at
 * `anchor`) and, with `progIdr`, the program IDR, cross-checked and confirmed through
 * `confirm`. Never throws for what guest memory holds: a view that cannot be read says why.
 */
export async function listBpfPrograms(
  mem: GuestMemory,
  core: KernelTypes,
  types: BpfTypes,
  anchor: KAddr,
  options: BpfOptions = {},
): Promise<BpfPrograms> {
  const limits = { ...DEFAULTS, ...options };
  const out: BpfPrograms = {
    programs: [],
    views: {
      kallsyms: status(true),
      prog_idr: options.progIdr === undefined
        ? status(false, 'not available: the guest\'s kallsyms does not give "prog_idr"')
        : status(true),
    },
    subprograms: 0,
    races: 0,
    confirmReads: 0,
    unconfirmed: 0,
    agent: { programs: [], complete: false },
  };
  const found = new Map<KAddr, { program: Found; views: Set<BpfView> }>();
  const add = (program: Found, view: BpfView) => {
    const entry = found.get(program.auxAt) ?? { program, views: new Set<BpfView>() };
    entry.views.add(view);
    found.set(program.auxAt, entry);
  };

  // The agent's own programs, from its fd table.
  const own = new Map<KAddr, Found>();
  const mask = typeMask(types);
  const table = await readFdTable(mem, core, types.fd, anchor, limits.maxFds);
  for (const slot of table.slots) {
    if (slot.file === undefined) continue;
    try {
      const file = await readStruct(mem, slot.file, types.fd.file);
      if (typeof file.privateData !== "number" || typeof file.dentry !== "number") continue;
      // Only a program's fd holds a program: other files' private_data is something else.
      const { name } = await readStruct(mem, file.dentry, types.dentry);
      if (name !== BPF_PROG_NAME) continue;
      const program = await readProgram(mem, types, file.privateData, mask);
      if (program) own.set(program.auxAt, program);
    } catch {
      // Not a program file: its private_data is something else.
    }
  }

  out.agent = {
    programs: [...own.values()].map((p) => ({
      name: p.aux.name,
      tag: p.prog.tag,
      prog: mem.space.hex(p.progAt),
    })),
    complete: !table.truncated,
  };
  await walkKallsyms(mem, types, [...own.values()], limits.maxPrograms, out, add, table.reason);
  if (options.progIdr !== undefined) {
    // A program the list gave is checked both ways already: the IDR's entry reuses it.
    const known = new Map([...found.values()].map(({ program }) => [program.progAt, program]));
    await walkIdr(mem, types, options.progIdr, limits.maxPrograms, out.views.prog_idr, add, known);
  }

  // Only two whole views can be compared: a cut one lacks what it did not reach.
  const whole = (v: BpfViewStatus) => v.supported && !v.truncated;
  const compare = whole(out.views.prog_idr) && whole(out.views.kallsyms);
  let confirms = 0;
  // Programs share maps: each is read once.
  const maps = new Map<KAddr, BpfMap>();
  for (const { program, views } of found.values()) {
    const seenIn = (["prog_idr", "kallsyms"] as const).filter((v) => views.has(v));
    const described = await describe(mem, types, program, own.has(program.auxAt), seenIn, maps);
    if (compare && seenIn.length === 1) {
      if (confirms++ >= limits.maxConfirms) {
        out.unconfirmed++;
        out.programs.push(described);
        continue;
      }
      const missing = await confirmMissing(types, program, described, options, out);
      if (missing === undefined) continue;
      described.missingFrom = missing;
    }
    out.programs.push(described);
  }
  out.programs.sort((a, b) => a.id - b.id);
  return out;
}

/** Walks `bpf_kallsyms` from the first of the agent's programs that is linked on it. */
async function walkKallsyms(
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
async function walkIdr(
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

async function describe(
  mem: GuestMemory,
  types: BpfTypes,
  { progAt, auxAt, prog, aux }: Found,
  own: boolean,
  seenIn: BpfView[],
  maps: Map<KAddr, BpfMap>,
): Promise<BpfProgram> {
  const out: BpfProgram = {
    id: aux.id,
    name: aux.name,
    ...hexOf("nameHex", aux.name),
    tag: prog.tag,
    type: types.progTypes.get(prog.type) ?? `type ${prog.type}`,
    loadTime: aux.loadTime,
    jited: false,
    maps: [],
    own,
    seenIn,
    missingFrom: [],
    prog: mem.space.hex(progAt),
    aux: mem.space.hex(auxAt),
  };
  try {
    const bitsAt = progAt + types.jited.offset;
    const bits = (mem.peek(bitsAt, 1) ?? await mem.read(bitsAt, 1))[0];
    out.jited = (bits >> types.jited.bit & 1) === 1;
    if (aux.usedMapCnt > MAX_USED_MAPS) {
      throw new RangeError(`used_map_cnt ${aux.usedMapCnt} is more than ${MAX_USED_MAPS}`);
    }
    if (aux.usedMapCnt === 0) return out;
    const array = follow(aux.usedMaps, "used_maps");
    const bytes = mem.peek(array, aux.usedMapCnt * 8) ?? await mem.read(array, aux.usedMapCnt * 8);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < aux.usedMapCnt; i++) {
      const at = follow(mem.space.pointerAt(view, i * 8), `used_maps[${i}]`);
      let map = maps.get(at);
      if (!map) {
        const m = peekStruct(mem, at, types.map) ?? await readStruct(mem, at, types.map);
        map = {
          id: m.id,
          name: m.name,
          ...hexOf("nameHex", m.name),
          type: types.mapTypes.get(m.type) ?? `type ${m.type}`,
          map: mem.space.hex(at),
        };
        maps.set(at, map);
      }
      out.maps.push(map);
    }
  } catch (error) {
    out.error = (error as Error).message;
  }
  return out;
}

/**
 * Re-reads a program seen in one view only through the live guest. Undefined when it was a race
 * (loading, unloading, gone); else the views it is still missing from ([] when it need not be
 * in the other: a program that is not JITed is on no kallsyms list).
 */
async function confirmMissing(
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

const cachedTypes = new WeakMap<Btf, BpfTypes | Error>();

function typesOf(btf: Btf): BpfTypes | Error {
  let types = cachedTypes.get(btf);
  if (!types) {
    try {
      types = resolveBpfTypes(btf);
    } catch (error) {
      types = error as Error;
    }
    cachedTypes.set(btf, types);
  }
  return types;
}

/** The `bpf` section of a scan: the guest's BPF programs, both views cross-checked. */
export const bpfSource: Source<"bpf"> = {
  name: "bpf",
  symbols: ["prog_idr"],
  plan(b, ctx) {
    const types = typesOf(ctx.btf);
    if (types instanceof Error) return;
    planBpfPrograms(b, ctx.types, types, ctx.anchor, { progIdr: ctx.symbols.get("prog_idr") });
  },
  async read(memory, ctx, confirm) {
    const types = typesOf(ctx.btf);
    if (types instanceof Error) {
      return { supported: false, reason: `not supported by this kernel: ${types.message}` };
    }
    const value = await listBpfPrograms(memory, ctx.types, types, ctx.anchor, {
      progIdr: ctx.symbols.get("prog_idr"),
      confirm,
    });
    const views = Object.entries(value.views);
    if (views.every(([, v]) => !v.supported)) {
      return { supported: false, reason: views.map(([n, v]) => `${n}: ${v.reason}`).join("; ") };
    }
    const cut = views.filter(([, v]) => v.truncated).map(([, v]) => v.reason);
    if (value.unconfirmed) cut.push(`${value.unconfirmed} programs in one view left unconfirmed`);
    return {
      supported: true,
      value,
      truncated: cut.length > 0,
      ...(cut.length ? { reason: cut.join("; ") } : {}),
    };
  },
};
