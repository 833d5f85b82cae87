/**
 * Synthetic open files for unit tests: fd tables, files, inodes, dentries and mounts laid out
 * with a real kernel's offsets in a {@linkcode SyntheticKernel}.
 *
 * @module
 */

import type { Btf } from "../../btf/mod.ts";
import type { KAddr } from "../../memory/mod.ts";
import type { FdWalkTypes, FileTypes } from "../mod.ts";
import type { SyntheticKernel } from "./synthetic.ts";

const EXT4_SUPER_MAGIC = 0xef53;

/** Bytes before each inode: inodes live inside larger, file-system-specific structures. */
const INODE_PREFIX = 256;

/** A mount and the dentry at its root. */
export interface Mount {
  mount: KAddr;
  root: KAddr;
}

/** Builds fd tables: files_struct → fdtable → fd array, hung on a task. */
export class SyntheticFds {
  constructor(readonly kernel: SyntheticKernel, readonly types: FdWalkTypes) {}

  /**
   * Gives `task` an fd table of `maxFds` slots (at least `slots.length`), slot i holding
   * `slots[i]` (a file, or null). Returns the fdtable's address.
   */
  table(task: KAddr, slots: (KAddr | null)[], maxFds = Math.max(64, slots.length)): KAddr {
    const bytes = new Uint8Array(maxFds * 8);
    const view = new DataView(bytes.buffer);
    slots.forEach((file, i) => {
      if (file !== null) view.setBigUint64(i * 8, this.kernel.space.fromKAddr(file), true);
    });
    const array = this.kernel.placeBytes(bytes);
    // The open-fds bitmap: a bit for each slot that holds a file.
    const open = new Uint8Array(Math.ceil(maxFds / 64) * 8);
    slots.forEach((file, i) => {
      if (file !== null) open[i >> 3] |= 1 << (i & 7);
    });
    const openFds = this.kernel.placeBytes(open);
    const fdt = this.kernel.place(this.types.fdtable, { maxFds, fd: array, openFds });
    const files = this.kernel.place(this.types.files, { fdt });
    this.kernel.mutate(task, { files });
    return fdt;
  }

  /** A file on `inode`, without a path (its other fields zero). */
  file(inode: KAddr): KAddr {
    return this.kernel.place(this.types.file, { inode });
  }
}

/** Builds a file-system tree: mounts, dentries with names, inodes and files. */
export class SyntheticFs extends SyntheticFds {
  readonly #inline: number;
  declare readonly types: FileTypes;

  constructor(kernel: SyntheticKernel, types: FileTypes, btf: Btf) {
    super(kernel, types);
    let inline: number;
    try {
      inline = btf.field("dentry", "d_shortname").offset; // 6.14+
    } catch {
      inline = btf.field("dentry", "d_iname").offset;
    }
    this.#inline = inline;
  }

  /**
   * A mount whose root is a new "/" dentry; mounted on `mountpoint` of `parent`, or the root
   * of its own tree (its own parent) when `parent` is absent.
   */
  mount(parent?: Mount, mountpoint?: KAddr): Mount {
    const root = this.dentry("/", null);
    const mount = this.kernel.place(this.types.mount, { root, mountpoint: mountpoint ?? root });
    this.kernel.mutate(mount, { parent: parent?.mount ?? mount });
    return { mount, root };
  }

  /**
   * A dentry named `name` under `parent`, or its own parent (a root, or a pseudo file's dentry)
   * when `parent` is null. Short names are kept in the dentry, as the kernel does. It is hashed
   * (its `d_hash.pprev` points at itself, standing in for a bucket) unless `unlinked`.
   */
  dentry(name: string, parent: KAddr | null, unlinked = false): KAddr {
    const bytes = new TextEncoder().encode(name);
    const at = this.kernel.place(this.types.dentry, { nameLen: bytes.length });
    const inline = bytes.length < 32;
    const where = inline ? at + this.#inline : this.kernel.placeBytes(bytes);
    if (inline) this.kernel.placeBytes(bytes, where);
    this.kernel.mutate(at, { parent: parent ?? at, name: where, hashed: unlinked ? null : at });
    return at;
  }

  /** Dentries for each component of `path` under `root`; returns the last. */
  path(root: KAddr, path: string): KAddr {
    return path.split("/").filter(Boolean).reduce(
      (parent, name) => this.dentry(name, parent),
      root,
    );
  }

  /** A file on `inode` whose path is `dentry` in `mount`. */
  override file(inode: KAddr, dentry?: KAddr, mount?: KAddr): KAddr {
    const mnt = mount === undefined ? null : mount + this.types.mntOffset;
    return this.kernel.place(this.types.file, { inode, dentry: dentry ?? null, mnt });
  }

  #superBlocks = new Map<number, KAddr>();

  /** The superblock of a file system with `magic` (one per magic). */
  superBlock(magic: number): KAddr {
    let at = this.#superBlocks.get(magic);
    if (at === undefined) {
      at = this.kernel.place(this.types.superBlock, { magic });
      this.#superBlocks.set(magic, at);
    }
    return at;
  }

  /**
   * An inode of `mode` and number `ino` on a file system with `magic` (ext4's by default),
   * inside a larger zeroed structure.
   */
  inode(mode: number, ino: number, magic = EXT4_SUPER_MAGIC): KAddr {
    const sb = this.superBlock(magic);
    return this.kernel.place(this.types.inode, { mode, ino, sb }, { prefix: INODE_PREFIX });
  }
}
