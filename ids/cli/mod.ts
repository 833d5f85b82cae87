/**
 * The IDS's command line: the commands of `ebpfmon-ids` and of `main.ts` (`serve`, `ps`,
 * `lsmod`, `bpf`, `ss`, `lsof`, `check`, `alerts`), the tables and stats line they print
 * ({@linkcode formatTable}, {@linkcode formatStats}), guest-controlled text made safe for a
 * terminal ({@linkcode printable}), and the permissions the IDS program runs with
 * ({@linkcode IDS_PERMISSIONS}, under `deno run` and compiled alike).
 *
 * @module
 */

export { alertsCommand } from "./alerts.ts";
export { checkCommand } from "./check.ts";
export { formatProcesses, formatStats, formatTable, psCommand } from "./commands.ts";
export { IDS_PERMISSIONS } from "./permissions.ts";
export { printable } from "./terminal.ts";
export {
  bpfCommand,
  formatBpfPrograms,
  formatModules,
  lsmodCommand,
  lsofCommand,
  ssCommand,
} from "./view_commands.ts";
