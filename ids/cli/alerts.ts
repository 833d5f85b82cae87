/**
 * The `alerts` command: the alerts of a configuration's state directory, as a table or JSON. It
 * reads the store directly, so it works while the service runs (SQLite WAL readers do not wait
 * for the writer) and when it does not.
 *
 * @module
 */

import { Command, Option } from "@commander-js/extra-typings";
import { formatTable } from "./commands.ts";
import { printable, terminalJson } from "./terminal.ts";
import { loadConfig } from "../service/mod.ts";
import { type Alert, ALERT_STATES, type AlertState, AlertStore, MAX_LIST } from "../alerts/mod.ts";

function time(at: number | undefined): string {
  return at === undefined ? "-" : new Date(at).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** The alerts as a table, guest-controlled strings escaped. */
export function formatAlerts(alerts: readonly Alert[]): string {
  const rows = alerts.map((a) => [
    String(a.id),
    a.vm,
    printable(a.rule),
    a.severity,
    a.state,
    String(a.count),
    time(a.firstSeen),
    time(a.state === "resolved" ? a.resolvedAt : a.lastSeen),
    printable(a.subject),
    printable(a.message),
  ]);
  return formatTable(
    [
      "ID",
      "VM",
      "RULE",
      "SEVERITY",
      "STATE",
      "COUNT",
      "FIRST SEEN",
      "LAST/RESOLVED",
      "SUBJECT",
      "MESSAGE",
    ],
    rows,
    new Set([0, 5]),
  );
}

function limit(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > MAX_LIST) {
    throw new RangeError(`Invalid --limit "${value}": expected an integer from 1 to ${MAX_LIST}`);
  }
  return n;
}

/** Builds the `alerts` command. */
export function alertsCommand() {
  return new Command("alerts")
    .description("Print the stored alerts of the service of a configuration file")
    .requiredOption("--config <file>", "the service's JSON configuration")
    .addOption(new Option("--state <state>", "only alerts in this state").choices(ALERT_STATES))
    .option("--vm <name>", "only alerts of this guest")
    .option("--limit <n>", `at most this many, the most recently seen first (1-${MAX_LIST})`, "100")
    .option("--json", "print JSON instead of a table")
    .action(async (options) => {
      const max = limit(options.limit);
      const config = await loadConfig(options.config);
      const path = `${config.stateDir}/alerts.db`;
      let alerts: Alert[] = [];
      try {
        await Deno.stat(path);
        using store = AlertStore.open(path);
        alerts = store.list({
          state: options.state as AlertState | undefined,
          vm: options.vm,
          limit: max,
        });
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
        console.error(`ebpfmon-ids: no alert store at "${path}" yet`);
      }
      console.log(options.json ? terminalJson({ alerts }) : formatAlerts(alerts));
    });
}
