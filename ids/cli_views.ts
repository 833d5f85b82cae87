/**
 * The IDS's commands for the views beyond the process list: `lsmod`, `ss` and `lsof PID`, each
 * with the same flags and stats line as `ps`.
 *
 * @module
 */

import { formatTable, viewCommand } from "./cli.ts";
import type { Module } from "./linux/modules.ts";
import type { Socket } from "./linux/sockets.ts";
import type { OpenFile } from "./linux/files.ts";

/** The module list as /proc/modules would show it. */
export function formatModules(modules: Module[]): string {
  const rows = modules.map((m) => [
    m.name,
    String(m.size),
    m.refcount === null ? "-" : String(m.refcount),
    m.state,
    m.base,
    m.taintFlags || "-",
  ]);
  return formatTable(["MODULE", "SIZE", "REFS", "STATE", "BASE", "TAINTS"], rows, new Set([1, 2]));
}

function endpoint(address: string, port: number): string {
  return `${address.includes(":") ? `[${address}]` : address}:${port}`;
}

/** The socket list, as `ss -tuan` would show it, with owners as pid/fd. */
export function formatSockets(sockets: Socket[]): string {
  const rows = sockets.map((s) => [
    s.protocol + (s.family === "inet6" ? "6" : ""),
    s.state,
    endpoint(s.localAddress, s.localPort),
    endpoint(s.remoteAddress, s.remotePort),
    String(s.inode),
    s.owners.map((o) => `${o.pid}/${o.fd}`).join(",") + (s.error ? `  (error: ${s.error})` : ""),
  ]);
  return formatTable(["PROTO", "STATE", "LOCAL", "PEER", "INODE", "PID/FD"], rows, new Set([4]));
}

/** A process's open files, as lsof would show them. */
export function formatFiles(files: OpenFile[]): string {
  const rows = files.map((f) => [
    String(f.fd),
    f.type,
    String(f.inode),
    f.path + (f.pathComplete ? "" : "  (incomplete)") + (f.error ? `  (error: ${f.error})` : ""),
  ]);
  return formatTable(["FD", "TYPE", "INODE", "PATH"], rows, new Set([0, 2]));
}

/** Builds the `lsmod` command. */
export function lsmodCommand() {
  return viewCommand(
    "lsmod",
    "Print the guest's kernel modules (or say that its kernel has none)",
    async (session, mode) => {
      const { answer, stats } = await session.modules(mode);
      const table = answer.supported ? formatModules(answer.modules) : `modules: ${answer.reason}`;
      return { json: { ...answer }, table, stats };
    },
  );
}

/** Builds the `ss` command. */
export function ssCommand() {
  return viewCommand(
    "ss",
    "Print the guest's TCP and UDP sockets (IPv4 and IPv6) and the processes holding them",
    async (session, mode) => {
      const { sockets, stats } = await session.sockets(mode);
      return { json: { sockets }, table: formatSockets(sockets), stats };
    },
  );
}

/** Builds the `lsof PID` command. */
export function lsofCommand() {
  return viewCommand(
    "lsof",
    "Print the open files of one process of the guest",
    async (session, mode, args) => {
      const pid = Number(args[0]);
      if (!Number.isInteger(pid) || pid < 0) throw new TypeError(`Invalid PID "${args[0]}"`);
      const { answer, stats } = await session.files(pid, mode);
      return { json: { ...answer }, table: formatFiles(answer.files), stats };
    },
    { name: "<pid>", description: "the process" },
  );
}
