/**
 * What the checked tables are made of in one kernel, and how their entries decode: arrays of
 * pointers (the system call tables), the IDT's gates (a handler split over three fields of
 * `gate_struct`), and operations structures (those of their members that are function pointers,
 * from BTF). A part the kernel lacks is a reason, not an error.
 *
 * The number of system calls is the length of `trace_array.enter_syscall_files[NR_syscalls]` in
 * BTF (present with CONFIG_FTRACE_SYSCALLS); the ia32 table has the same length, as every
 * system call since Linux 5.1 has the same number on every architecture and both tables end at
 * the newest. Without that array the tables are reported absent, with the reason.
 *
 * @module
 */

import type { Btf } from "../btf/mod.ts";
import type { GuestMemory, KAddr } from "../memory/mod.ts";
import {
  type Decoded,
  type FieldSpec,
  LayoutError,
  optional,
  ptr,
  resolveLayout,
  type StructLayout,
} from "../kernel/mod.ts";
import type { AddressRange } from "./address_owner.ts";

/** Number of gates in the x86-64 IDT (architectural). */
export const IDT_ENTRIES = 256;
/** The vectors reserved for exceptions (architectural): 0..31. */
const EXCEPTION_VECTORS = 32;

/** The members of `struct` that are function pointers, as a layout of pointers. */
function functionPointers(btf: Btf, struct: string) {
  let members;
  try {
    members = btf.struct(struct).members;
  } catch (error) {
    throw new LayoutError(`Cannot resolve struct "${struct}": ${(error as Error).message}`);
  }
  const spec: Record<string, FieldSpec<"ptr">> = {};
  for (const m of members) {
    if (!m.name) continue;
    const t = btf.type(btf.resolve(m.typeId));
    if (t.kind === "PTR" && btf.type(btf.resolve(t.typeId)).kind === "FUNC_PROTO") {
      spec[m.name] = ptr(m.name);
    }
  }
  if (Object.keys(spec).length === 0) {
    throw new LayoutError(`struct "${struct}" has no function pointer`);
  }
  return resolveLayout(btf, struct, spec);
}

/**
 * Resolves what the tables are made of in one kernel; a part the kernel lacks is a reason, not
 * an error.
 */
export function resolvePointerTypes(btf: Btf) {
  return {
    syscalls: optional(() => {
      const field = btf.field("trace_array", "enter_syscall_files");
      const array = btf.type(btf.resolve(field.typeId));
      if (array.kind !== "ARRAY" || array.count === 0) {
        throw new LayoutError(`"enter_syscall_files" of struct "trace_array" is no array`);
      }
      return array.count;
    }),
    gate: optional(() => ({
      size: btf.sizeof(btf.struct("gate_struct").id),
      low: btf.field("gate_struct", "offset_low").offset,
      middle: btf.field("gate_struct", "offset_middle").offset,
      high: btf.field("gate_struct", "offset_high").offset,
    })),
    seqOps: optional(() => functionPointers(btf, "seq_operations")),
    procRoot: optional(() =>
      resolveLayout(btf, "proc_dir_entry", {
        dirOps: ptr("proc_dir_ops"),
        iops: ptr("proc_iops"),
      })
    ),
    fileOps: optional(() => functionPointers(btf, "file_operations")),
    inodeOps: optional(() => functionPointers(btf, "inode_operations")),
  };
}

/** The resolved table types of one kernel. */
export type PointerTypes = ReturnType<typeof resolvePointerTypes>;

/** A table to read: where, how many bytes, and how its entries decode. */
export interface TablePlan {
  table: string;
  at: KAddr;
  len: number;
  read: (mem: GuestMemory) => Promise<{ slots: number; entries: [string, bigint][] }>;
  /** Entries below `slots` that may still hold their boot-time value in init text. */
  boot?: { slots: number; ranges: AddressRange[] };
}

function u64(view: DataView, at: number): bigint {
  return view.getBigUint64(at, true);
}

export function pointerTable(
  table: string,
  at: KAddr,
  count: number,
): TablePlan {
  return {
    table,
    at,
    len: count * 8,
    async read(mem) {
      const bytes = await mem.read(at, count * 8);
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const entries: [string, bigint][] = [];
      for (let i = 0; i < count; i++) entries.push([String(i), u64(view, i * 8)]);
      return { slots: count, entries };
    },
  };
}

export function idtTable(
  at: KAddr,
  gate: { size: number; low: number; middle: number; high: number },
  initText: AddressRange[],
): TablePlan {
  return {
    boot: { slots: EXCEPTION_VECTORS, ranges: initText },
    table: "idt_table",
    at,
    len: IDT_ENTRIES * gate.size,
    async read(mem: GuestMemory) {
      const bytes = await mem.read(at, IDT_ENTRIES * gate.size);
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const entries: [string, bigint][] = [];
      for (let i = 0; i < IDT_ENTRIES; i++) {
        const g = i * gate.size;
        const handler = (BigInt(view.getUint32(g + gate.high, true)) << 32n) |
          (BigInt(view.getUint16(g + gate.middle, true)) << 16n) |
          BigInt(view.getUint16(g + gate.low, true));
        entries.push([String(i), handler]);
      }
      return { slots: IDT_ENTRIES, entries };
    },
  };
}

export function opsTable(
  table: string,
  at: KAddr,
  layout: StructLayout<Decoded<Record<string, FieldSpec<"ptr">>>>,
): TablePlan {
  return {
    table,
    at,
    len: layout.size,
    async read(mem) {
      const bytes = await mem.read(at + layout.start, layout.end - layout.start);
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      return {
        slots: layout.fields.length,
        entries: layout.fields.map((f) => [f.name, u64(view, f.offset - layout.start)]),
      };
    },
  };
}
