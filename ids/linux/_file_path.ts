/**
 * The path of an open file, as readlink of /proc/PID/fd/FD shows it: rebuilt as the kernel's
 * prepend_path() does, from `f_path.dentry` up `d_parent` to the root of its mount, then up the
 * mount tree (`struct mount`: `mnt_parent`, `mnt_mountpoint`) to the namespace's root mount; and
 * the names the kernel makes up instead for files of pseudo file systems (pipes, pidfds).
 *
 * Guest memory is hostile: a path is bounded in depth, the paths of one list in steps, a name by
 * NAME_MAX; chains are checked for loops, and a path that cannot be completed says so, with the
 * part rebuilt from the file up.
 *
 * @module
 */

import { follow, type GuestMemory, type KAddr } from "../memory/mod.ts";
import { decodeName, type Fields, readStruct } from "../kernel/mod.ts";
import type { FileOptions, FileTypes } from "./files.ts";

/** The limits of {@linkcode pathOf}, as {@linkcode FileOptions} sets them. */
type Limits = Required<FileOptions>;

/** PIPEFS_MAGIC and PIDFS_MAGIC of include/uapi/linux/magic.h. */
const PIPEFS_MAGIC = 0x50495045;
const PIDFS_MAGIC = 0x50494446;

/**
 * The name /proc gives a file on a pseudo file system, where the kernel makes it up rather
 * than walking dentries: pipes and pidfds (Linux 6.9+, on pidfs); others keep their dentry path.
 */
export async function pseudoName(
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
export async function nameOf(
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

export interface PathResult {
  path: string;
  complete: boolean;
  /** It ended at a dentry that is its own parent but not its mount's root (a pseudo file). */
  pseudo: boolean;
  error?: string;
}

/** The path of a file, rebuilt as the kernel's prepend_path() does. */
export async function pathOf(
  mem: GuestMemory,
  types: FileTypes,
  file: Fields<FileTypes["file"]>,
  limits: Limits,
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
