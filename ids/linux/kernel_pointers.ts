/**
 * The kernel's function-pointer tables a rootkit rewrites, read from guest memory: every entry
 * of `sys_call_table` (and `ia32_sys_call_table`), the 256 gates of the IDT (`idt_table`), the
 * `seq_operations` behind /proc/net/tcp, udp, tcp6 and udp6 (`tcp4_seq_ops`, `udp_seq_ops`,
 * `tcp6_seq_ops`, `udp6_seq_ops`) and the operations of the /proc root (`proc_root`'s
 * `proc_dir_ops` and `proc_iops`). Each value must point into core kernel text
 * ([`_stext`, `_etext`), entry text included) or, for a table that lives in a module (tcp6 with
 * a modular ipv6), into that module's text; the section keeps only the entries outside core
 * text, and the `hooked_pointer` rule names the owner of each (ids/detect/hooked_pointer.ts).
 * One exception, seen on every booted kernel: the reserved exception vectors (below 32) the
 * kernel never sets keep their boot-time handlers of `early_idt_handler_array`, in init text
 * ([`_sinittext`, `_einittext`)); they are counted per table (`boot`), not reported.
 *
 * Which kernels dispatch through the table: Linux up to 6.8 calls `sys_call_table[nr]` from
 * `do_syscall_64`; since the 2024 branch-history mitigation (6.9, and stable kernels that took
 * it, such as Debian's 6.1.176) `x64_sys_call()` switches on the number and calls each
 * `__x64_sys_*` directly, so a rewritten entry is no longer called there. The table is still
 * the kernel's (seccomp, tracing and ia32 paths read it) and what rootkits write, so it is
 * checked on every kernel.
 *
 * Everything is read at symbol addresses, so the section needs data symbols in kallsyms
 * (CONFIG_KALLSYMS_ALL); a kernel that hides them gets `supported: false` naming the symbol.
 *
 * What each table is made of and how its entries decode is in `_pointer_tables.ts`; who owns an
 * address, in `address_owner.ts`.
 *
 * @module
 */

import type { Btf } from "../btf/mod.ts";
import type { GuestMemory, KAddr } from "../memory/mod.ts";
import { type PlanBuilder, readStruct } from "../kernel/mod.ts";
import type { ScanContext, Section, Source } from "../detect/mod.ts";
import { type AddressRange, hex64, inRanges } from "./address_owner.ts";
import { fixedLayout, type ImageRegion, planKernelImage } from "./_kernel_image.ts";
import {
  idtTable,
  opsTable,
  pointerTable,
  type PointerTypes,
  resolvePointerTypes,
  type TablePlan,
} from "./_pointer_tables.ts";

/** One checked table. */
export interface PointerTable {
  /** `sys_call_table`, `idt_table`, `tcp4_seq_ops`, `proc_root.proc_dir_ops`... */
  table: string;
  address: string;
  /** Entries it has. */
  slots: number;
  /** Entries that are not NULL (IDT: not zero). */
  set: number;
  /**
   * IDT only: exception vectors the kernel never set (reserved ones), still at the boot-time
   * handlers of `early_idt_handler_array` in init text, freed and unmapped after boot.
   */
  boot?: number;
  /** Set when the table could not be read. */
  error?: string;
}

/** An entry outside core kernel text. */
export interface PointerEntry {
  table: string;
  /** Index (system call number, vector) or member name. */
  slot: string;
  value: string;
  /** Where the table is (the operations structure, for the /proc root). */
  tableAddress: string;
}

/** The `pointers` section. */
export interface KernelPointers {
  /** Core kernel text: [_stext, _etext), and entry text where it lies outside. */
  core: AddressRange[];
  tables: PointerTable[];
  /** Tables this kernel lacks or hides, with the reason. */
  absent: { table: string; reason: string }[];
  /** Entries outside core text, in table order. */
  outside: PointerEntry[];
}

const SEQ_TABLES = ["tcp4_seq_ops", "udp_seq_ops", "tcp6_seq_ops", "udp6_seq_ops"] as const;
const SYSCALL_TABLES = ["sys_call_table", "ia32_sys_call_table"] as const;

/** Symbols {@linkcode pointersSource} asks for. */
export const POINTER_SYMBOLS = [
  "_stext",
  "_etext",
  "__entry_text_start",
  "__entry_text_end",
  "_sinittext",
  "_einittext",
  ...SYSCALL_TABLES,
  "idt_table",
  ...SEQ_TABLES,
  "proc_root",
] as const;

interface PointerPlan {
  core: AddressRange[];
  tables: TablePlan[];
  absent: { table: string; reason: string }[];
  /** proc_root's operations pointers, followed when present. */
  procRoot?: { at: KAddr; layout: Extract<PointerTypes["procRoot"], { ok: unknown }>["ok"] };
}

const missing = (name: string) => `kallsyms does not give the address of "${name}"`;

/** What the section reads, from the symbols and types; a string says why it cannot be read. */
function pointerPlan(ctx: ScanContext, types: PointerTypes): PointerPlan | string {
  const sym = (name: string) => ctx.symbols.get(name) || undefined;
  const stext = sym("_stext");
  const etext = sym("_etext");
  if (stext === undefined) return missing("_stext");
  if (etext === undefined) return missing("_etext");
  const core: AddressRange[] = [{ start: ctx.space.hex(stext), end: ctx.space.hex(etext) }];
  const entryStart = sym("__entry_text_start");
  const entryEnd = sym("__entry_text_end");
  if (
    entryStart !== undefined && entryEnd !== undefined && (entryStart < stext || entryEnd > etext)
  ) {
    core.push({ start: ctx.space.hex(entryStart), end: ctx.space.hex(entryEnd) });
  }
  const tables: TablePlan[] = [];
  const absent: { table: string; reason: string }[] = [];
  const add = (table: string, make: (at: KAddr) => TablePlan | string) => {
    const at = sym(table);
    const made = at === undefined ? missing(table) : make(at);
    if (typeof made === "string") absent.push({ table, reason: made });
    else tables.push(made);
  };
  for (const table of SYSCALL_TABLES) {
    add(
      table,
      (at) =>
        "ok" in types.syscalls
          ? pointerTable(table, at, types.syscalls.ok)
          : `the number of system calls is unknown: ${types.syscalls.reason}`,
    );
  }
  const initStart = sym("_sinittext");
  const initEnd = sym("_einittext");
  const initText = initStart !== undefined && initEnd !== undefined
    ? [{ start: ctx.space.hex(initStart), end: ctx.space.hex(initEnd) }]
    : [];
  add(
    "idt_table",
    (at) => "ok" in types.gate ? idtTable(at, types.gate.ok, initText) : types.gate.reason,
  );
  for (const table of SEQ_TABLES) {
    add(
      table,
      (at) => "ok" in types.seqOps ? opsTable(table, at, types.seqOps.ok) : types.seqOps.reason,
    );
  }
  let procRoot: PointerPlan["procRoot"];
  const root = sym("proc_root");
  if (root === undefined) absent.push({ table: "proc_root", reason: missing("proc_root") });
  else if (!("ok" in types.procRoot)) {
    absent.push({ table: "proc_root", reason: types.procRoot.reason });
  } else procRoot = { at: root, layout: types.procRoot.ok };
  if (tables.length === 0 && !procRoot) {
    return `no table can be read: ${absent.map((a) => `${a.table}: ${a.reason}`).join("; ")}`;
  }
  return { core, tables, absent, procRoot };
}

const typesOf = new WeakMap<Btf, PointerTypes>();

function pointerTypes(btf: Btf): PointerTypes {
  let types = typesOf.get(btf);
  if (!types) typesOf.set(btf, types = resolvePointerTypes(btf));
  return types;
}

/** Adds to `b` what {@linkcode readKernelPointers} reads: one root, two nodes. */
export function planKernelPointers(b: PlanBuilder, ctx: ScanContext): void {
  const types = pointerTypes(ctx.btf);
  const plan = pointerPlan(ctx, types);
  if (typeof plan === "string") return;
  const regions: ImageRegion[] = plan.tables.map((t) => ({ name: t.table, at: t.at, len: t.len }));
  const root = plan.procRoot;
  if (root) {
    for (const f of root.layout.fields) {
      regions.push({ name: `proc_root.${f.member}`, at: root.at + f.offset, len: f.size });
    }
  }
  const image = planKernelImage(b, regions);
  if (!image || !root) return;
  // Both operations structures are one node: a range as long as the larger of them.
  const ops = [["proc_dir_ops", types.fileOps], ["proc_iops", types.inodeOps]] as const;
  const size = Math.max(...ops.map(([, o]) => "ok" in o ? o.ok.size : 0));
  if (size === 0) return;
  const node = b.node(fixedLayout("operations", size, [
    { name: "all", offset: 0, size, kind: "raw" },
  ]));
  for (const [field, o] of ops) {
    const name = `proc_root.${field}`;
    if ("ok" in o && image.offsets.has(name)) b.ptr(image.node, name, node);
  }
}

/**
 * Reads the `pointers` section. Never throws for what guest memory holds: a table that cannot
 * be read is listed with its error.
 */
export async function readKernelPointers(
  mem: GuestMemory,
  ctx: ScanContext,
): Promise<Section<KernelPointers>> {
  const types = pointerTypes(ctx.btf);
  const plan = pointerPlan(ctx, types);
  if (typeof plan === "string") return { supported: false, reason: plan };
  const value: KernelPointers = {
    core: plan.core,
    tables: [],
    absent: [...plan.absent],
    outside: [],
  };
  const core = plan.core;
  const check = async (t: TablePlan) => {
    const table: PointerTable = { table: t.table, address: mem.space.hex(t.at), slots: 0, set: 0 };
    value.tables.push(table);
    try {
      const { slots, entries } = await t.read(mem);
      table.slots = slots;
      for (const [slot, v] of entries) {
        if (v === 0n) continue;
        table.set++;
        if (t.boot && Number(slot) < t.boot.slots && inRanges(v, t.boot.ranges)) {
          table.boot = (table.boot ?? 0) + 1;
        } else if (!inRanges(v, core)) {
          value.outside.push({
            table: t.table,
            slot,
            value: hex64(v),
            tableAddress: table.address,
          });
        }
      }
    } catch (error) {
      table.error = (error as Error).message;
    }
  };
  for (const t of plan.tables) await check(t);
  if (plan.procRoot) {
    let fields: { dirOps: unknown; iops: unknown } | undefined;
    try {
      fields = await readStruct(mem, plan.procRoot.at, plan.procRoot.layout);
    } catch (error) {
      value.tables.push({
        table: "proc_root",
        address: mem.space.hex(plan.procRoot.at),
        slots: 0,
        set: 0,
        error: (error as Error).message,
      });
    }
    const ops = [
      ["proc_root.proc_dir_ops", fields?.dirOps, types.fileOps],
      ["proc_root.proc_iops", fields?.iops, types.inodeOps],
    ] as const;
    for (const [table, at, layout] of ops) {
      if (!fields) break;
      if (!("ok" in layout)) {
        value.absent.push({ table, reason: layout.reason });
      } else if (typeof at === "number") {
        await check(opsTable(table, at, layout.ok));
      } else if (at !== null) {
        value.tables.push({
          table,
          address: hex64(0n),
          slots: 0,
          set: 0,
          error: `${table} is not a kernel address`,
        });
      }
    }
  }
  const errors = value.tables.filter((t) => t.error);
  return {
    supported: true,
    value,
    truncated: errors.length > 0,
    ...(errors.length ? { reason: errors.map((t) => `${t.table}: ${t.error}`).join("; ") } : {}),
  };
}

/** The source of the `pointers` section. */
export const pointersSource: Source<"pointers"> = {
  name: "pointers",
  symbols: POINTER_SYMBOLS,
  plan(b, ctx) {
    planKernelPointers(b, ctx);
  },
  read(memory, ctx) {
    return readKernelPointers(memory, ctx);
  },
};
