/**
 * The IDS's commands for the views beyond the process list: `lsmod`, `ss` and `lsof PID`, each
 * with the same flags and stats line as `ps`.
 *
 * @module
 */

import { formatTable, viewCommand } from "./commands.ts";
import { printable, printableName } from "./terminal.ts";
import {
  type BpfPrograms,
  type Module,
  type OpenFile,
  parseNamespaceId,
  type Socket,
} from "../linux/mod.ts";
import { scanSections } from "../detect/mod.ts";

/** A module's "used by" column as /proc/modules shows it, names escaped; "-" for none. */
function usedBy(m: Module): string {
  const names = [...(m.usedBy ?? []).map(printableName), ...(m.permanent ? ["[permanent]"] : [])];
  return names.length ? names.join(",") : "-";
}

/**
 * The modules as /proc/modules would show them, with the kernel structures that hold each
 * (SEEN-IN: list, kset, mod_tree) when they were read.
 */
export function formatModules(modules: (Module & { seenIn?: readonly string[] })[]): string {
  const rows = modules.map((m) => [
    printableName(m.name),
    String(m.size),
    m.refcount === null ? "-" : String(m.refcount),
    usedBy(m),
    m.state,
    m.base,
    m.taintFlags || "-",
    m.seenIn?.join(",") ?? "-",
  ]);
  return formatTable(
    ["MODULE", "SIZE", "REFS", "USED-BY", "STATE", "BASE", "TAINTS", "SEEN-IN"],
    rows,
    new Set([1, 2]),
  );
}

function endpoint(address: string, port: number): string {
  return `${address.includes(":") ? `[${address}]` : address}:${port}`;
}

/** The socket list, as `ss -tuan` would show it, with owners as pid/fd and each NETNS. */
export function formatSockets(sockets: Socket[]): string {
  const rows = sockets.map((s) => [
    s.netNs === undefined ? "-" : String(s.netNs),
    s.protocol + (s.family === "inet6" ? "6" : ""),
    s.state,
    endpoint(s.localAddress, s.localPort),
    endpoint(s.remoteAddress, s.remotePort),
    String(s.inode),
    s.owners.map((o) => `${o.pid}/${o.fd}`).join(",") +
    (s.error ? `  (error: ${printable(s.error)})` : ""),
  ]);
  return formatTable(
    ["NETNS", "PROTO", "STATE", "LOCAL", "PEER", "INODE", "PID/FD"],
    rows,
    new Set([0, 5]),
  );
}

/**
 * A process's open files, as lsof would show them. Paths come from guest memory: escaped for the
 * terminal.
 */
export function formatFiles(files: OpenFile[]): string {
  const rows = files.map((f) => [
    String(f.fd),
    f.type,
    String(f.inode),
    printableName(f.path) + (f.pathComplete ? "" : "  (incomplete)") +
    (f.error ? `  (error: ${printable(f.error)})` : ""),
  ]);
  return formatTable(["FD", "TYPE", "INODE", "PATH"], rows, new Set([0, 2]));
}

/** Builds the `lsmod` command. */
export function lsmodCommand() {
  return viewCommand(
    "lsmod",
    "Print the guest's kernel modules, found in any of the module list, kset and mod_tree " +
      "(or say that its kernel has none)",
    async (session, mode) => {
      const { scan, stats } = await scanSections(session, mode, ["modules"]);
      const section = scan.sections.modules ?? { supported: false, reason: "not read" };
      if (!section.supported) {
        const json = { supported: false, reason: section.reason, modules: [] };
        return { json, table: `modules: ${printable(section.reason)}`, stats };
      }
      const { modules, views } = section.value;
      const notes = Object.entries(views).flatMap(([name, view]) =>
        !view.present
          ? [`${name}: ${printable(view.reason ?? "")}`]
          : view.truncated
          ? [`${name}: truncated: ${printable(view.reason ?? "")}`]
          : []
      );
      const table = [formatModules(modules), ...notes].join("\n");
      return { json: { supported: true, modules, views }, table, stats };
    },
  );
}

/** The namespace `ss --netns` asks for. @throws {TypeError} naming a bad one. */
function netnsFilter(options: Record<string, unknown>): number | undefined {
  return typeof options.netns === "string" ? parseNamespaceId(options.netns, "--netns") : undefined;
}

/** Builds the `ss` command. */
export function ssCommand() {
  return viewCommand(
    "ss",
    "Print the guest's TCP and UDP sockets (IPv4 and IPv6) of every network namespace and " +
      "the processes holding them",
    async (session, mode, _args, options) => {
      const netns = netnsFilter(options);
      const all = await session.sockets(mode);
      const sockets = all.sockets.filter((s) => netns === undefined || s.netNs === netns);
      return {
        json: { sockets, namespaces: all.namespaces },
        table: formatSockets(sockets),
        stats: all.stats,
      };
    },
    undefined,
    {
      add: (command) =>
        command.option("--netns <id>", "only sockets of this network namespace (/proc/PID/ns/net)"),
      check: netnsFilter,
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

/**
 * The guest's BPF programs, one per line, then a line per view that could not be read whole and
 * what the kernel does not record. Names come from guest memory: escaped for the terminal.
 */
export function formatBpfPrograms(list: BpfPrograms): string {
  const rows = list.programs.map((p) => [
    String(p.id),
    printable(p.type),
    p.tag,
    printableName(p.name),
    `${(p.loadTime / 1e9).toFixed(3)}s`,
    p.own ? "yes" : "-",
    p.seenIn.join(",") +
    (p.missingFrom.length ? `  (missing from ${p.missingFrom.join(",")})` : "") +
    (p.error ? `  (error: ${printable(p.error)})` : ""),
  ]);
  const lines = [
    formatTable(["ID", "TYPE", "TAG", "NAME", "LOADED", "OWN", "SEEN-IN"], rows, new Set([0, 4])),
  ];
  for (const [name, view] of Object.entries(list.views)) {
    if (!view.supported) lines.push(`${name}: ${printable(view.reason ?? "")}`);
    else if (view.truncated) lines.push(`${name}: truncated: ${printable(view.reason ?? "")}`);
  }
  lines.push(
    "LOADED is seconds since boot; helpers used are not recorded by the kernel (maps are: --json)",
  );
  return lines.join("\n");
}

/** Builds the `bpf` command. */
export function bpfCommand() {
  return viewCommand(
    "bpf",
    "Print the BPF programs loaded in the guest kernel (prog_idr and bpf_kallsyms, cross-checked)",
    async (session, mode) => {
      const { scan, stats } = await scanSections(session, mode, ["bpf"]);
      const section = scan.sections.bpf ?? { supported: false, reason: "not read" };
      if (!section.supported) {
        return {
          json: { programs: [], supported: false, reason: section.reason },
          table: `bpf: ${printable(section.reason)}`,
          stats,
        };
      }
      const { programs, views, subprograms, races } = section.value;
      return {
        json: { programs, views, subprograms, races },
        table: formatBpfPrograms(section.value),
        stats,
      };
    },
  );
}
