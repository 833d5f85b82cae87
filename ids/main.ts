/**
 * `ebpfmon-ids`: the IDS's entry point, run outside the guests: `serve`, `ps`, `lsmod`, `ss`,
 * `lsof`.
 *
 * @module
 */

import {
  alertsCommand,
  bpfCommand,
  checkCommand,
  lsmodCommand,
  lsofCommand,
  psCommand,
  ssCommand,
} from "./cli/mod.ts";
import { Command } from "@commander-js/extra-typings";
import { runProgram } from "../protocol/mod.ts";
import { serveCommand } from "./serve.ts";

if (import.meta.main) {
  const program = new Command("ebpfmon-ids")
    .description("The IDS: rebuild guests' OS data from their kernel memory, serve it over REST")
    .addCommand(serveCommand())
    .addCommand(psCommand())
    .addCommand(checkCommand())
    .addCommand(alertsCommand())
    .addCommand(lsmodCommand())
    .addCommand(bpfCommand())
    .addCommand(ssCommand())
    .addCommand(lsofCommand())
    .showHelpAfterError();
  await runProgram(program, "ebpfmon-ids");
}
