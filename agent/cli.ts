/**
 * The `agent` command: runs the agent in the guest until interrupted.
 *
 * @module
 */

import { Command } from "@commander-js/extra-typings";
import { DEFAULT_AGENT_ADDRESS, DEFAULT_STATE, parseHostPort } from "../protocol/cli.ts";
import { Agent } from "./server.ts";

/** Builds the `agent` command. */
export function agentCommand() {
  return new Command("agent")
    .description("Run the agent inside the guest: load the eBPF programs and serve the IDS")
    .option(
      "--listen <host:port>",
      "address to listen on (port 0 picks one)",
      DEFAULT_AGENT_ADDRESS,
    )
    .option("--state <dir>", "directory of the credentials (created on first use)", DEFAULT_STATE)
    .option("--ring-mb <n>", "ring buffer size in MiB (a power of two)", "64")
    .action(async (options) => {
      const { hostname, port } = parseHostPort(options.listen, "--listen");
      const ringMb = Number(options.ringMb);
      if (!Number.isInteger(ringMb) || ringMb < 1 || (ringMb & (ringMb - 1)) !== 0) {
        throw new TypeError(`Invalid --ring-mb "${options.ringMb}": expected a power of two`);
      }
      const agent = await Agent.start({
        hostname,
        port,
        stateDir: options.state,
        ringBytes: ringMb << 20,
      });
      const stop = () => {
        agent.close().finally(() => Deno.exit(0));
      };
      Deno.addSignalListener("SIGINT", stop);
      Deno.addSignalListener("SIGTERM", stop);
    });
}
