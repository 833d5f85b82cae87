/**
 * A task's open files, rebuilt from guest kernel memory as /proc/PID/fd shows them: the fd table
 * (`task->files->fdt`: `max_fds` slots of `struct file *`; fd_table.ts), each file's inode, and
 * its path, rebuilt from `f_path.dentry` up `d_parent` to the root of its mount, then up the
 * mount tree (`struct mount`: `mnt_parent`, `mnt_mountpoint`) to the namespace's root mount
 * (_file_path.ts). Sockets, pipes and anonymous inodes are named as the kernel names them
 * (`socket:[INODE]`, `pipe:[INODE]`, `anon_inode:[eventfd]`).
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
  hexOf,
  offsetOf,
  type PlanBuilder,
  ptr,
  readStruct,
  resolveLayout,
  uint,
} from "../kernel/mod.ts";
import type { KernelTypes } from "./kernel_types.ts";
import type { TaskNodes } from "./processes.ts";
import {
  MAX_FDS,
  type PlanFdOptions,
  planFdTables,
  readFdTable,
  resolveFdTypes,
} from "./fd_table.ts";
import { nameOf, pathOf, pseudoName } from "./_file_path.ts";

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

const DEFAULTS = { maxFds: MAX_FDS, maxPathDepth: 1024, maxName: 255, maxPathSteps: 1 << 20 };

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

/** Limits of {@linkcode planFiles}; they should match the view's {@linkcode FileOptions}. */
export interface PlanFileOptions extends PlanFdOptions {
  /** @default 255 */
  maxName?: number;
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
