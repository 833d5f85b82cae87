/**
 * A task's fd table (`task->files->fdt`: `max_fds` slots of `struct file *`, the open ones marked
 * in `open_fds`), its structures, its read and its plan: the first step of each view that goes
 * through open files (the files themselves, the sockets and the BPF programs processes hold).
 *
 * Guest memory is hostile: the slots scanned are bounded, a slot that is no kernel address is
 * kept with an error, and a table that cannot be read whole ends as truncated, with where.
 *
 * @module
 */

import type { Btf } from "../btf/mod.ts";
import { follow, type GuestMemory, type KAddr } from "../memory/mod.ts";
import {
  type NodeRef,
  peekStruct,
  type PlanBuilder,
  ptr,
  readStruct,
  resolveLayout,
  type StructLayout,
  uint,
} from "../kernel/mod.ts";
import type { KernelTypes } from "./kernel_types.ts";
import type { TaskNodes } from "./processes.ts";

/** Most fd slots scanned, unless the caller says otherwise. */
export const MAX_FDS = 65536;

/**
 * Resolves the structures of fd tables (what the socket owners' walk needs too).
 * @throws {LayoutError} naming the struct and field the kernel lacks.
 */
export function resolveFdTypes(btf: Btf) {
  return {
    files: resolveLayout(btf, "files_struct", { fdt: ptr("fdt") }),
    fdtable: resolveLayout(btf, "fdtable", {
      maxFds: uint("max_fds"),
      fd: ptr("fd"),
      /** Bit N is set when fd N is open: the slots worth reading. */
      openFds: ptr("open_fds"),
    }),
    file: resolveLayout(btf, "file", {
      inode: ptr("f_inode"),
      dentry: ptr("f_path.dentry"),
      mnt: ptr("f_path.mnt"),
    }),
  };
}

/** The resolved fd-table structures of one guest kernel. */
export type FdTypes = ReturnType<typeof resolveFdTypes>;

/** What a walk of fd tables needs: the tables' structures, and the fields it reads of a file. */
export type FdWalkTypes<F extends StructLayout<unknown> = StructLayout<unknown>> =
  & Pick<FdTypes, "files" | "fdtable">
  & { file: F };

/** One slot of an fd table: the file, or why the slot is unusable. */
export interface FdSlot {
  fd: number;
  file?: KAddr;
  error?: string;
}

/** A task's fd table. */
export interface FdTable {
  pid: number;
  slots: FdSlot[];
  truncated: boolean;
  reason?: string;
}

/** The 8 bytes of an fd slot, fetched. */
async function slotView(mem: GuestMemory, at: KAddr): Promise<DataView> {
  const slot = await mem.read(at, 8);
  return new DataView(slot.buffer, slot.byteOffset, 8);
}

/**
 * Reads the open slots of a task's fd table (`files->fdt->fd[0 .. max_fds)`). A task without
 * files (exiting) has none. Never throws: what cannot be read ends the table as truncated.
 */
export async function readFdTable(
  mem: GuestMemory,
  core: KernelTypes,
  types: FdWalkTypes,
  task: KAddr,
  maxFds = MAX_FDS,
): Promise<FdTable> {
  const table: FdTable = { pid: -1, slots: [], truncated: false };
  // Where a failure happened, written out only if one does.
  let stage = "task";
  let at = task;
  const where = () => `${stage} ${mem.space.hex(at)}`;
  try {
    // Each read is served from the snapshot without an await when it holds the bytes.
    const t = peekStruct(mem, task, core.taskFiles) ?? await readStruct(mem, task, core.taskFiles);
    table.pid = t.pid;
    if (t.files === null) return table;
    const files = follow(t.files, "files");
    stage = "files_struct";
    at = files;
    const f = peekStruct(mem, files, types.files) ?? await readStruct(mem, files, types.files);
    const fdt = follow(f.fdt, "fdt");
    stage = "fdtable";
    at = fdt;
    const { maxFds: count, fd, openFds } = peekStruct(mem, fdt, types.fdtable) ??
      await readStruct(mem, fdt, types.fdtable);
    let slots = count;
    if (count > maxFds) {
      table.truncated = true;
      table.reason = `${where()}: max_fds ${count} is more than ${maxFds}`;
      slots = maxFds;
    }
    if (slots === 0) return table;
    const array = follow(fd, "fd");
    stage = "open_fds of fdtable";
    // Only the slots of open fds are read (a slot being installed may still be NULL).
    const openAt = follow(openFds, "open_fds");
    const bitmapBytes = Math.ceil(slots / 8);
    const open = mem.peek(openAt, bitmapBytes) ?? await mem.read(openAt, bitmapBytes);
    stage = "fd array";
    at = array;
    for (let fd = 0; fd < slots; fd++) {
      if (open[fd >> 3] === 0) {
        fd |= 7;
        continue;
      }
      if (((open[fd >> 3] >> (fd & 7)) & 1) === 0) continue;
      const slotAt = array + fd * 8;
      const span = mem.peekSpan(slotAt, 8);
      const p = span
        ? mem.space.pointerAt(span.view, span.base + slotAt - span.start)
        : mem.space.pointerAt(await slotView(mem, slotAt), 0);
      if (p === null) continue;
      if (typeof p === "number") {
        table.slots.push({ fd, file: p });
        continue;
      }
      try {
        follow(p, `fd ${fd}`);
      } catch (error) {
        table.slots.push({ fd, error: (error as Error).message });
      }
    }
  } catch (error) {
    table.truncated = true;
    table.reason = `${where()}: ${(error as Error).message}`;
  }
  return table;
}

/** The plan nodes of an fd-table walk, for plans that go on from each file. */
export interface FileNodes<F extends StructLayout<unknown> = FdTypes["file"]> {
  file: NodeRef<F>;
}

/** Options of {@linkcode planFdTables}. */
export interface PlanFdOptions {
  /** Only the task whose `pid` field is this (an EQ condition on the task). */
  pid?: number;
  /** @default 65536 */
  maxFds?: number;
  /**
   * Copy only the fields the walk reads of files_struct, fdtable and file, in both modes: for a
   * walk of every task's table that reads nothing else of them (the sockets they hold).
   */
  linksOnly?: boolean;
}

/**
 * Adds the fd-table walk to `b`: from each task of `tasks`, files → fdt → fd array → file.
 * Returns the file node, to which callers add what they read of each file.
 */
export function planFdTables<F extends StructLayout<unknown>>(
  b: PlanBuilder,
  types: FdWalkTypes<F>,
  tasks: Pick<TaskNodes, "task">,
  options: PlanFdOptions = {},
): FileNodes<F> {
  const fieldsOnly = options.linksOnly ?? false;
  const files = b.node(types.files, { fieldsOnly });
  const fdt = b.node(types.fdtable, { fieldsOnly });
  // A file's fields are read as one range: a record costs more than the bytes between them.
  const file = b.node(types.file, { fieldsOnly, span: fieldsOnly });
  const when = options.pid === undefined ? undefined : {
    field: "pid",
    equals: { mask: 0xffff_ffffn, value: BigInt(options.pid >>> 0) },
  };
  b.ptr(tasks.task, "files", files, 0, { when });
  b.ptr(files, "fdt", fdt);
  // Most of an fd array is NULL: copy the open-fds bitmap and the non-NULL slots only.
  const maxFds = options.maxFds ?? MAX_FDS;
  b.bytes(fdt, "openFds", "maxFds", Math.ceil(maxFds / 8), { bits: true });
  b.array(fdt, "fd", "maxFds", file, { stride: 8, max: maxFds, sparse: true });
  return { file };
}
