/**
 * A task's open files, rebuilt from guest kernel memory as /proc/PID/fd shows them: the fd table
 * (`task->files->fdt`: `max_fds` slots of `struct file *`), each file's inode, and its path,
 * rebuilt from `f_path.dentry` up `d_parent` to the root of its mount, then up the mount tree
 * (`struct mount`: `mnt_parent`, `mnt_mountpoint`) to the namespace's root mount. Sockets, pipes
 * and anonymous inodes are named as the kernel names them (`socket:[INODE]`, `pipe:[INODE]`,
 * `anon_inode:[eventfd]`).
 *
 * Guest memory is hostile: the fd table, every path and every name is bounded, chains are
 * checked for loops, a file that cannot be read is listed with an error, a path that cannot be
 * completed says so (`pathComplete: false`), and a broken fd table ends the list as truncated.
 *
 * @module
 */

import type { Btf } from "../btf/mod.ts";
import { follow, type GuestMemory, type KAddr } from "../memory/mod.ts";
import {
  decodeName,
  type Fields,
  hexOf,
  type NodeRef,
  offsetOf,
  peekStruct,
  type PlanBuilder,
  ptr,
  readStruct,
  resolveLayout,
  uint,
} from "../kernel/mod.ts";
import type { KernelTypes } from "./kernel_types.ts";
import type { TaskNodes } from "./processes.ts";

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

/**
 * Resolves the structures of open files. Field names are the same in Linux 6.1 and 6.18.
 * @throws {LayoutError} naming the struct and field the kernel lacks.
 */
export function resolveFileTypes(btf: Btf) {
  return {
    ...resolveFdTypes(btf),
    inode: resolveLayout(btf, "inode", {
      mode: uint("i_mode"),
      ino: uint("i_ino"),
      sb: ptr("i_sb"),
    }),
    /** A file system's magic number tells the pseudo ones, whose /proc names are made up. */
    superBlock: resolveLayout(btf, "super_block", { magic: uint("s_magic") }),
    dentry: resolveLayout(btf, "dentry", {
      parent: ptr("d_parent"),
      nameLen: uint("d_name.len"),
      name: ptr("d_name.name"),
      /** NULL once the dentry is unhashed (its name unlinked): d_path then says " (deleted)". */
      hashed: ptr("d_hash.pprev"),
    }),
    mount: resolveLayout(btf, "mount", {
      parent: ptr("mnt_parent"),
      mountpoint: ptr("mnt_mountpoint"),
      root: ptr("mnt.mnt_root"),
    }),
    /** Offset of the `struct vfsmount` in `struct mount`: f_path.mnt minus this is the mount. */
    mntOffset: offsetOf(btf, "mount", "mnt"),
  };
}

/** The resolved file structures of one guest kernel. */
export type FileTypes = ReturnType<typeof resolveFileTypes>;

/** What an open file is, from the type bits of its inode's `i_mode`. */
export type FileType =
  | "file"
  | "dir"
  | "socket"
  | "pipe"
  | "anon"
  | "char"
  | "block"
  | "link"
  | "other";

/** One open file descriptor. */
export interface OpenFile {
  fd: number;
  type: FileType;
  /** The inode number (`i_ino`); -1 when unread. */
  inode: number;
  /**
   * As readlink of /proc/PID/fd/FD; when incomplete, the part rebuilt from the file up. Each
   * name in it as `decodeName()` (kernel/name.ts) maps bytes: UTF-8, `\xNN`, `\\`.
   */
  path: string;
  /**
   * The bytes of `path` in hex, when its text does not show them plainly (an invalid byte, a
   * backslash, a control or invisible character); absent otherwise.
   */
  pathHex?: string;
  pathComplete: boolean;
  /** Address of the `struct file`. */
  file: string;
  /** Set when something of this file could not be read. */
  error?: string;
}

/** A task's open files. */
export interface FileList {
  /** Address of the task. */
  task: string;
  /** Its pid; -1 when the task could not be read. */
  pid: number;
  files: OpenFile[];
  /** The fd table could not be read whole. */
  truncated: boolean;
  reason?: string;
}

/** Limits of {@linkcode listFiles}. */
export interface FileOptions {
  /** Most fd slots scanned. @default 65536 */
  maxFds?: number;
  /** Most dentries and mounts followed for one path. @default 1024 */
  maxPathDepth?: number;
  /** Longest name of one path component (NAME_MAX). @default 255 */
  maxName?: number;
  /** Most dentries and mounts followed for all paths of the list. @default 1 << 20 */
  maxPathSteps?: number;
}

const DEFAULTS = { maxFds: 65536, maxPathDepth: 1024, maxName: 255, maxPathSteps: 1 << 20 };

const S_IFMT = 0o170000;
/** The `i_mode` type bits of a socket. */
export const S_IFSOCK = 0o140000;
const TYPES = new Map<number, FileType>([
  [S_IFSOCK, "socket"],
  [0o120000, "link"],
  [0o100000, "file"],
  [0o060000, "block"],
  [0o040000, "dir"],
  [0o020000, "char"],
  [0o010000, "pipe"],
  [0, "anon"],
]);

/** The file type of an inode's `i_mode`. */
export function fileType(mode: number): FileType {
  return TYPES.get(mode & S_IFMT) ?? "other";
}

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
  types: FdTypes,
  task: KAddr,
  maxFds = DEFAULTS.maxFds,
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

/**
 * Lists the open files of the task at `task`.
 * Never throws: an unreadable task gives an empty, truncated list.
 */
export async function listFiles(
  mem: GuestMemory,
  core: KernelTypes,
  types: FileTypes,
  task: KAddr,
  options: FileOptions = {},
): Promise<FileList> {
  const limits = { ...DEFAULTS, ...options };
  const table = await readFdTable(mem, core, types, task, limits.maxFds);
  const budget = { steps: limits.maxPathSteps };
  const files: OpenFile[] = [];
  for (const slot of table.slots) {
    if (slot.file === undefined) {
      files.push({
        fd: slot.fd,
        type: "other",
        inode: -1,
        path: "",
        pathComplete: false,
        file: "",
        error: slot.error,
      });
    } else {
      const file = await describeFile(mem, types, slot.fd, slot.file, limits, budget);
      files.push({ ...file, ...hexOf("pathHex", file.path) });
    }
  }
  return {
    task: mem.space.hex(task),
    pid: table.pid,
    files,
    truncated: table.truncated,
    reason: table.reason,
  };
}

async function describeFile(
  mem: GuestMemory,
  types: FileTypes,
  fd: number,
  at: KAddr,
  limits: typeof DEFAULTS,
  budget: { steps: number },
): Promise<OpenFile> {
  const out: OpenFile = {
    fd,
    type: "other",
    inode: -1,
    path: "",
    pathComplete: false,
    file: mem.space.hex(at),
  };
  try {
    const file = await readStruct(mem, at, types.file);
    const inode = await readStruct(mem, follow(file.inode, "f_inode"), types.inode);
    out.type = fileType(inode.mode);
    out.inode = inode.ino;
    if (out.type === "socket") {
      out.path = `socket:[${inode.ino}]`;
      out.pathComplete = true;
      return out;
    }
    if (out.type === "anon") {
      const dentry = follow(file.dentry, "f_path.dentry");
      out.path = `anon_inode:${await nameOf(mem, types, dentry, limits.maxName)}`;
      out.pathComplete = true;
      return out;
    }
    const path = await pathOf(mem, types, file, limits, budget);
    out.pathComplete = path.complete;
    out.path = path.pseudo ? await pseudoName(mem, types, inode, path.path) : path.path;
    if (path.error) out.error = path.error;
  } catch (error) {
    out.error = (error as Error).message;
  }
  return out;
}

/** PIPEFS_MAGIC and PIDFS_MAGIC of include/uapi/linux/magic.h. */
const PIPEFS_MAGIC = 0x50495045;
const PIDFS_MAGIC = 0x50494446;

/**
 * The name /proc gives a file on a pseudo file system, where the kernel makes it up rather
 * than walking dentries: pipes and pidfds (Linux 6.9+, on pidfs); others keep their dentry path.
 */
async function pseudoName(
  mem: GuestMemory,
  types: FileTypes,
  inode: Fields<FileTypes["inode"]>,
  path: string,
): Promise<string> {
  const magic = (await readStruct(mem, follow(inode.sb, "i_sb"), types.superBlock)).magic;
  if (magic === PIPEFS_MAGIC) return `pipe:[${inode.ino}]`;
  if (magic === PIDFS_MAGIC) return "anon_inode:[pidfd]";
  return path;
}

/** The name of a dentry (`d_name`), at most `maxName` bytes. */
async function nameOf(
  mem: GuestMemory,
  types: FileTypes,
  at: KAddr,
  maxName: number,
  dentry?: Fields<FileTypes["dentry"]>,
): Promise<string> {
  const d = dentry ?? await readStruct(mem, at, types.dentry);
  if (d.nameLen > maxName) {
    throw new RangeError(
      `Cannot read the name of dentry ${
        mem.space.hex(at)
      }: ${d.nameLen} bytes, more than ${maxName}`,
    );
  }
  if (d.nameLen === 0) return "";
  const bytes = await mem.read(mem.space.follow(d.name, "d_name.name of dentry", at), d.nameLen);
  return decodeName(bytes);
}

interface PathResult {
  path: string;
  complete: boolean;
  /** It ended at a dentry that is its own parent but not its mount's root (a pseudo file). */
  pseudo: boolean;
  error?: string;
}

/** The path of a file, rebuilt as the kernel's prepend_path() does. */
async function pathOf(
  mem: GuestMemory,
  types: FileTypes,
  file: Fields<FileTypes["file"]>,
  limits: typeof DEFAULTS,
  budget: { steps: number },
): Promise<PathResult> {
  const parts: string[] = [];
  // As d_path(): a file whose own dentry was unlinked (unhashed, not a root) is "(deleted)".
  let deleted = false;
  const path = () => "/" + parts.toReversed().join("/") + (deleted ? " (deleted)" : "");
  try {
    let dentry = follow(file.dentry, "f_path.dentry");
    let mount = follow(file.mnt, "f_path.mnt") - types.mntOffset;
    let m = await readStruct(mem, mount, types.mount);
    const seen = new Set<string>();
    for (let hops = 0;; hops++) {
      if (hops >= limits.maxPathDepth) {
        throw new RangeError(`Cannot finish the path: more than ${limits.maxPathDepth} steps`);
      }
      if (budget.steps-- <= 0) {
        throw new RangeError(
          `Cannot finish the path: the list's paths took more than ${limits.maxPathSteps} steps`,
        );
      }
      const key = `${mount}:${dentry}`;
      if (seen.has(key)) {
        throw new Error(`Cannot finish the path: it loops at dentry ${mem.space.hex(dentry)}`);
      }
      seen.add(key);
      if (dentry === m.root) {
        const parent = mem.space.follow(m.parent, "mnt_parent of mount", mount);
        if (parent === mount) return { path: path(), complete: true, pseudo: false };
        dentry = mem.space.follow(m.mountpoint, "mnt_mountpoint of mount", mount);
        mount = parent;
        m = await readStruct(mem, mount, types.mount);
        continue;
      }
      const d = await readStruct(mem, dentry, types.dentry);
      parts.push(await nameOf(mem, types, dentry, limits.maxName, d));
      const parent = mem.space.follow(d.parent, "d_parent of dentry", dentry);
      if (hops === 0 && d.hashed === null && parent !== dentry) deleted = true;
      if (parent === dentry) {
        // A pseudo file's dentry (a socket, a pipe, a memfd) is its own parent; any other
        // dentry that is, and is not its mount's root, is cut off from the tree.
        if (hops === 0) return { path: path(), complete: true, pseudo: true };
        throw new Error(
          `Cannot finish the path: dentry ${mem.space.hex(dentry)} is no mount's root`,
        );
      }
      dentry = parent;
    }
  } catch (error) {
    return { path: path(), complete: false, pseudo: false, error: (error as Error).message };
  }
}

/** The plan nodes of an fd-table walk, for plans that go on from each file. */
export interface FileNodes {
  file: NodeRef<FdTypes["file"]>;
}

/** Limits of {@linkcode planFiles}; they should match the view's {@linkcode FileOptions}. */
export interface PlanFileOptions {
  /** Only the task whose `pid` field is this (an EQ condition on the task). */
  pid?: number;
  /** @default 65536 */
  maxFds?: number;
  /** @default 255 */
  maxName?: number;
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
export function planFdTables(
  b: PlanBuilder,
  types: FdTypes,
  tasks: Pick<TaskNodes, "task">,
  options: PlanFileOptions = {},
): FileNodes {
  const fieldsOnly = options.linksOnly ?? false;
  const files = b.node(types.files, { fieldsOnly });
  const fdt = b.node(types.fdtable, { fieldsOnly });
  const file = b.node(types.file, { fieldsOnly });
  const when = options.pid === undefined ? undefined : {
    field: "pid",
    equals: { mask: 0xffff_ffffn, value: BigInt(options.pid >>> 0) },
  };
  b.ptr(tasks.task, "files", files, 0, { when });
  b.ptr(files, "fdt", fdt);
  // Most of an fd array is NULL: copy the open-fds bitmap and the non-NULL slots only.
  const maxFds = options.maxFds ?? DEFAULTS.maxFds;
  b.bytes(fdt, "openFds", "maxFds", Math.ceil(maxFds / 8), { bits: true });
  b.array(fdt, "fd", "maxFds", file, { stride: 8, max: maxFds, sparse: true });
  return { file };
}

/**
 * Adds to `b` what {@linkcode listFiles} reads for every task of `tasks` (or, with `pid`, for
 * the task with that pid only): the fd table, each file's inode, its dentry chain with names,
 * and its mount chain. init_task itself is not included.
 */
export function planFiles(
  b: PlanBuilder,
  types: FileTypes,
  tasks: TaskNodes,
  options: PlanFileOptions = {},
): void {
  const { file } = planFdTables(b, types, tasks, options);
  const inode = b.node(types.inode);
  const dentry = b.node(types.dentry);
  const mount = b.node(types.mount);
  const superBlock = b.node(types.superBlock);
  b.ptr(file, "inode", inode);
  b.ptr(inode, "sb", superBlock);
  b.ptr(file, "dentry", dentry);
  b.ptr(file, "mnt", mount, types.mntOffset);
  b.ptr(dentry, "parent", dentry);
  b.bytes(dentry, "name", "nameLen", options.maxName ?? DEFAULTS.maxName);
  b.ptr(mount, "parent", mount);
  b.ptr(mount, "mountpoint", dentry);
}
