/**
 * ebpfmon: watch a confidential VM from outside it.
 *
 * `main.ts` carries every command: `agent` (inside the guest), `ps` (the IDS asking an agent),
 * and `local` (both on this machine, with defaults). Run `deno run -A main.ts --help`.
 *
 * @module
 */

import { Command } from "@commander-js/extra-typings";
import { agentCommand } from "./agent/cli.ts";
import { spawnAgent } from "./ids/agent_process.ts";
import { formatProcesses, formatStats, openSession, psCommand } from "./ids/cli.ts";
import { DEFAULT_STATE } from "./protocol/host_port.ts";

function localCommand() {
  return new Command("local")
    .description(
      "Start an agent on this machine, connect the IDS to it and print this machine's process table",
    )
    .option("--state <dir>", "directory of the credentials and BTF store", DEFAULT_STATE)
    .action(async (options) => {
      await using agent = await spawnAgent({
        stateDir: options.state,
        log: (line) => console.error(line),
      });
      console.error(`agent pid ${agent.pid} listening on ${agent.address}`);
      using session = await openSession({ agent: agent.address, state: options.state });
      const { processes, stats } = await session.processes("prefetch");
      console.log(formatProcesses(processes));
      console.log(formatStats(stats));
    });
}

export function program() {
  return new Command("ebpfmon")
    .description("Monitor a confidential VM from outside it, through an eBPF agent inside it")
    .addCommand(agentCommand())
    .addCommand(psCommand())
    .addCommand(localCommand())
    .showHelpAfterError();
}

if (import.meta.main) {
  try {
    await program().parseAsync(Deno.args, { from: "user" });
  } catch (error) {
    console.error(`ebpfmon: ${(error as Error).message}`);
    Deno.exit(1);
  }
}
