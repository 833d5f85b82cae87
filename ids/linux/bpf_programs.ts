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
 * This file holds what the view returns, its plan and the cross-check; one program is read and
 * described in `_bpf_program.ts`, the two views are walked in `_bpf_walks.ts`, and what one view
 * lacks is re-read in `_bpf_confirm.ts`.
 *
 * @module
 */

import type { Btf } from "../btf/mod.ts";
import type { GuestMemory, KAddr } from "../memory/mod.ts";
import { peekStruct, type PlanBuilder, planXarray, readStruct } from "../kernel/mod.ts";
import type { KernelTypes } from "./kernel_types.ts";
import type { Source } from "../detect/mod.ts";
import { planFdTables, readFdTable } from "./fd_table.ts";
import { type BpfTypes, MAX_USED_MAPS, resolveBpfTypes, typeMask } from "./bpf_types.ts";
import { describe, findProgramFops, type Found, readProgram } from "./_bpf_program.ts";
import { walkIdr, walkKallsyms } from "./_bpf_walks.ts";
import { confirmMissing } from "./_bpf_confirm.ts";

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
  /**
   * The tag (hex, as the kernel reports it) of the agent's program to go around the list from:
   * every own program is on the one list, so walking it from each of them copies nothing more
   * and costs the walk once per program. Without it, or when none of the agent's linked programs
   * has it, every one of them is a start.
   */
  startTag?: string;
  /**
   * The `f_op` of program files (`bpf_prog_fops`, {@linkcode findProgramFops}): only the
   * agent's files that have it are read as programs. Without it, every file's private_data is.
   */
  programFops?: KAddr;
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
  // Of the agent's files only their links are read: their private_data.
  const { file } = planFdTables(b, types.fd, { task }, {
    maxFds: options.maxFds ?? DEFAULTS.maxFds,
    linksOnly: true,
  });
  // Any file's private_data is a candidate, read for a type test: copy its fields only (a
  // program-sized copy around a smaller object can run into unmapped memory and fail whole).
  const fdProg = b.node(types.prog, { extra: jitedByte, fieldsOnly: true });
  // Only the declared fields of these are read, in every mode: a whole aux is 1.3 KB, a whole
  // bpf_ksym half a KB of name.
  const fieldsOnly = true;
  const start = options.startTag === undefined ? undefined : b.node(types.aux, { fieldsOnly });
  const ownAux = b.node(types.aux, { fieldsOnly, ...(start ? { coveredBy: start } : {}) });
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
  // Every program file's private_data (every file's, when their f_op is not known) is read as a
  // program; only a plausible type leads on to an aux, and only a linked program's aux to the
  // list.
  const fops = options.programFops;
  b.ptr(
    file,
    "privateData",
    fdProg,
    0,
    fops === undefined ? {} : {
      when: { field: "fOp", equals: { mask: (1n << 64n) - 1n, value: b.space.fromKAddr(fops) } },
    },
  );
  // The program to start from first (its subtree is walked before the others' auxes, which it
  // then covers), then every program among the agent's files.
  if (start) {
    b.ptr(fdProg, "aux", start, 0, {
      when: { field: "tag", equals: tagCondition(options.startTag!) },
    });
  }
  b.ptr(fdProg, "aux", ownAux, 0, { when: { field: "type", inSet: typeMask(types) } });
  const from = start ?? ownAux;
  b.list(from, types.lnodeOffset, ksym, types.ksymLnodeOffset, { max, when: IS_PROGRAM });
  b.list(from, types.lnodeOffset, aux, types.lnodeOffset, { max, when: IS_PROGRAM });
  for (const from of [...(start ? [start] : []), ownAux, aux]) {
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

/** The plan condition that a `struct bpf_prog`'s 8-byte tag is `hex` (memory order). */
function tagCondition(hex: string): { mask: bigint; value: bigint } {
  if (!/^[0-9a-f]{16}$/.test(hex)) {
    throw new RangeError(`A program tag is 16 hex digits, not "${hex}"`);
  }
  let value = 0n;
  for (let i = 7; i >= 0; i--) {
    value = value << 8n | BigInt(parseInt(hex.slice(i * 2, i * 2 + 2), 16));
  }
  return { mask: (1n << 64n) - 1n, value };
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
      const file = peekStruct(mem, slot.file, types.fd.file) ??
        await readStruct(mem, slot.file, types.fd.file);
      if (typeof file.privateData !== "number") continue;
      if (options.programFops !== undefined && file.fOp !== options.programFops) continue;
      // Only a program's file holds a program whose aux points back to it: any other file's
      // private_data is something else, whatever its bytes look like.
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
  // The plan went around the list from the program of `startTag`: so does the read.
  const starts = [...own.values()].sort((a, b) =>
    Number(b.prog.tag === options.startTag) - Number(a.prog.tag === options.startTag)
  );
  await walkKallsyms(mem, types, starts, limits.maxPrograms, out, add, table.reason);
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

/** The anchor of the program files' f_op, found once per session. */
const PROGRAM_FOPS = "bpf_prog_fops";

/** The first program the agent says it loaded for this session: where the list is entered. */
function startTagOf(ctx: { loaded: readonly { tag: string }[] }): string | undefined {
  const tag = ctx.loaded[0]?.tag;
  return tag !== undefined && /^[0-9a-f]{16}$/.test(tag) ? tag : undefined;
}

/** The `bpf` section of a scan: the guest's BPF programs, both views cross-checked. */
export const bpfSource: Source<"bpf"> = {
  name: "bpf",
  symbols: ["prog_idr"],
  async prepare(ctx, memory): Promise<Record<string, KAddr>> {
    const types = typesOf(ctx.btf);
    if (types instanceof Error) return {};
    const fops = await findProgramFops(memory, ctx.types, types, ctx.anchor, DEFAULTS.maxFds)
      .catch(() => undefined);
    return fops === undefined ? {} : { [PROGRAM_FOPS]: fops };
  },
  plan(b, ctx) {
    const types = typesOf(ctx.btf);
    if (types instanceof Error) return;
    planBpfPrograms(b, ctx.types, types, ctx.anchor, {
      progIdr: ctx.symbols.get("prog_idr"),
      startTag: startTagOf(ctx),
      programFops: ctx.anchors.get(PROGRAM_FOPS),
    });
  },
  async read(memory, ctx, confirm) {
    const types = typesOf(ctx.btf);
    if (types instanceof Error) {
      return { supported: false, reason: `not supported by this kernel: ${types.message}` };
    }
    const value = await listBpfPrograms(memory, ctx.types, types, ctx.anchor, {
      progIdr: ctx.symbols.get("prog_idr"),
      confirm,
      startTag: startTagOf(ctx),
      programFops: ctx.anchors.get(PROGRAM_FOPS),
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
