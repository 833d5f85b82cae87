/**
 * The sockets processes hold open, found through their fd tables (fd_table.ts), read and planned:
 * a socket file's inode is the `vfs_inode` of a `struct socket_alloc`, whose i_mode says it is a
 * socket and whose socket's `sk` is the sock. Only a file whose `private_data` is the socket of
 * that socket_alloc (`f_inode - private_data` is the inode's offset from the socket) is read on:
 * the kernel takes a socket file's socket from its private_data (`sock_from_file`), so every
 * working socket passes, and the inodes of the other files (most of them) are never copied. What both socket views go through: the tables' view
 * for each socket's owners, the held sockets' view for the sockets themselves.
 *
 * @module
 */

import { follow, type GuestMemory, type KAddr } from "../memory/mod.ts";
import {
  type Fields,
  type NodeRef,
  peekStruct,
  type PlanBuilder,
  readStruct,
} from "../kernel/mod.ts";
import type { KernelTypes } from "./kernel_types.ts";
import { planFdTables, readFdTable } from "./fd_table.ts";
import { S_IFSOCK } from "./files.ts";
import type { Process, TaskNodes } from "./processes.ts";
import type { SocketTypes } from "./socket_types.ts";
import { taskAddress } from "./_process_fields.ts";

/**
 * Calls `visit` with each socket fd of `processes` (its sock's address), through their fd
 * tables: each socket file's inode read as the socket_alloc around it (what the plans copy),
 * whose i_mode says it is a socket's. Stops when `visit` answers false; problems go to
 * `problems`. A file processes share is read again for each (from the snapshot, or the pages
 * the first read fetched).
 */
export async function socketFds(
  mem: GuestMemory,
  core: KernelTypes,
  types: SocketTypes,
  processes: Process[],
  maxFds: number,
  problems: string[],
  visit: (pid: number, fd: number, sk: KAddr) => Promise<boolean>,
): Promise<void> {
  const sockIn = (alloc: Fields<SocketTypes["socketAlloc"]>) =>
    (alloc.mode & 0o170000) === S_IFSOCK && typeof alloc.sk === "number" ? alloc.sk : null;
  const between = socketInodeOffset(types);
  // Served from the snapshot without an await when it holds the file (and its inode).
  const peek = (at: KAddr): KAddr | null | undefined => {
    const file = peekStruct(mem, at, types.fd.file);
    if (!file) return undefined;
    if (!socketFile(file, between)) return null;
    const alloc = peekStruct(mem, file.inode - types.vfsInodeOffset, types.socketAlloc);
    return alloc && sockIn(alloc);
  };
  const read = async (at: KAddr, fd: number): Promise<KAddr | null> => {
    const file = await readStruct(mem, at, types.fd.file);
    if (!socketFile(file, between)) return null;
    const inode = follow(file.inode, `f_inode of fd ${fd}`);
    return sockIn(await readStruct(mem, inode - types.vfsInodeOffset, types.socketAlloc));
  };
  for (const process of processes) {
    const task = taskAddress(process, mem.space)!;
    const table = await readFdTable(mem, core, types.fd, task, maxFds);
    if (table.truncated) problems.push(`fds of pid ${process.pid}: ${table.reason}`);
    for (const slot of table.slots) {
      if (slot.file === undefined) continue;
      try {
        let sk = peek(slot.file);
        if (sk === undefined) sk = await read(slot.file, slot.fd);
        if (sk !== null && !await visit(process.pid, slot.fd, sk)) return;
      } catch (error) {
        problems.push(`fd ${slot.fd} of pid ${process.pid}: ${(error as Error).message}`);
      }
    }
  }
}

/** How far a socket file's inode is from its socket (private_data): both are in one socket_alloc. */
function socketInodeOffset(types: SocketTypes): number {
  return types.vfsInodeOffset - types.socketOffset;
}

/** Whether a file is a socket's: its private_data is the socket its inode belongs with. */
function socketFile(file: Fields<SocketTypes["fd"]["file"]>, between: number): file is
  & Fields<SocketTypes["fd"]["file"]>
  & { inode: KAddr; privateData: KAddr } {
  return typeof file.inode === "number" && typeof file.privateData === "number" &&
    file.inode - file.privateData === between;
}

/**
 * Each socket file's inode as the socket_alloc around it: its i_mode and i_ino, and the socket's
 * sk; the inodes of other files are not followed.
 */
export function planFdSockets(
  b: PlanBuilder,
  types: SocketTypes,
  tasks: TaskNodes,
  socket: NodeRef,
  sock: NodeRef,
  maxFds: number,
  linksOnly = false,
): void {
  const { file } = planFdTables(b, types.fd, tasks, { maxFds, linksOnly });
  b.ptr(file, "inode", socket, types.vfsInodeOffset, {
    when: {
      field: "inode",
      minus: { field: "privateData", equals: BigInt(socketInodeOffset(types)) },
    },
  });
  b.ptr(socket, "sk", sock, 0, {
    when: { field: "mode", equals: { mask: 0o170000n, value: BigInt(S_IFSOCK) } },
  });
}
