/**
 * The `agent` command: runs the agent in the guest until interrupted.
 *
 * @module
 */

import { Command } from "@commander-js/extra-typings";
import { DEFAULT_AGENT_ADDRESS, DEFAULT_STATE, LIMITS, parseHostPort } from "../protocol/mod.ts";
import { Agent } from "./server.ts";
import { DEFAULT_MAX_OBJECTS, DEFAULT_MAX_OBJECTS_PER_CONNECTION } from "./objects.ts";

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
    .option(
      "--ring-mb <n>",
      "ring buffer size in MiB of each walker (a power of two, at least 2: a READ fits whole); " +
        "walks larger than it are resumed as the ring drains",
      "2",
    )
    .option(
      "--handshake-timeout-ms <ms>",
      "time a peer has to complete the TLS handshake",
      positive("--handshake-timeout-ms"),
      3000,
    )
    .option(
      "--max-silent-connections <n>",
      "connections that sent nothing yet held at once (a newcomer evicts the oldest)",
      positive("--max-silent-connections"),
      1024,
    )
    .option(
      "--max-handshakes <n>",
      "TLS handshakes in progress at once (a newcomer evicts the least advanced)",
      positive("--max-handshakes"),
      256,
    )
    .option(
      "--max-handshakes-per-address <n>",
      "TLS handshakes in progress at once from one address",
      positive("--max-handshakes-per-address"),
      64,
    )
    .option(
      "--max-connections <n>",
      "authenticated connections served at once",
      positive("--max-connections"),
      16,
    )
    .option(
      "--send-timeout-ms <ms>",
      "time an answer may wait for the IDS to read it before the IDS is dropped",
      positive("--send-timeout-ms"),
      5000,
    )
    .option(
      "--idle-timeout-ms <ms>",
      "time an authenticated connection may stay silent before it is closed",
      positive("--idle-timeout-ms"),
      300_000,
    )
    .option(
      "--hold-cgroup <dir>",
      "a cgroup directory (v2, or a v1 freezer's) the IDS may ask to hold still during a " +
        "snapshot; repeat for several; never one that holds the agent",
      (dir: string, dirs: string[]) => [...dirs, dir],
      [] as string[],
    )
    .option(
      "--max-hold-ms <ms>",
      `the longest a hold may last, whatever the IDS asks (at most ${LIMITS.maxHoldMs})`,
      positive("--max-hold-ms", LIMITS.maxHoldMs),
      LIMITS.maxHoldMs,
    )
    .option(
      "--no-default-object",
      "start without loading the embedded walk.bpf.o: the IDS must LOAD its own object first",
    )
    .option(
      "--max-objects-per-connection <n>",
      "BPF objects one connection may LOAD and hold at once",
      positive("--max-objects-per-connection"),
      DEFAULT_MAX_OBJECTS_PER_CONNECTION,
    )
    .option(
      "--max-objects <n>",
      "BPF objects all connections may hold at once (each walker holds its ring buffer)",
      positive("--max-objects"),
      DEFAULT_MAX_OBJECTS,
    )
    .action(async (options) => {
      const { hostname, port } = parseHostPort(options.listen, "--listen");
      const ringMb = Number(options.ringMb);
      if (!Number.isInteger(ringMb) || ringMb < 2 || (ringMb & (ringMb - 1)) !== 0) {
        throw new TypeError(
          `Invalid --ring-mb "${options.ringMb}": expected a power of two, at least 2`,
        );
      }
      const agent = await Agent.start({
        hostname,
        port,
        stateDir: options.state,
        ringBytes: ringMb << 20,
        handshakeTimeoutMs: options.handshakeTimeoutMs,
        maxSilentConnections: options.maxSilentConnections,
        maxHandshakes: options.maxHandshakes,
        maxHandshakesPerAddress: options.maxHandshakesPerAddress,
        maxConnections: options.maxConnections,
        sendTimeoutMs: options.sendTimeoutMs,
        idleTimeoutMs: options.idleTimeoutMs,
        holdCgroups: options.holdCgroup,
        maxHoldMs: options.maxHoldMs,
        defaultObject: options.defaultObject,
        maxObjectsPerConnection: options.maxObjectsPerConnection,
        maxObjects: options.maxObjects,
      });
      const stop = () => {
        agent.close().finally(() => Deno.exit(0));
      };
      Deno.addSignalListener("SIGINT", stop);
      Deno.addSignalListener("SIGTERM", stop);
    });
}

/** Parses a flag's value as a positive integer (at most `max`), naming the flag when it is not one. */
function positive(flag: string, max = Number.MAX_SAFE_INTEGER): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < 1 || n > max) {
      const range = max === Number.MAX_SAFE_INTEGER ? "a positive integer" : `an integer 1..${max}`;
      throw new TypeError(`Invalid ${flag} "${value}": expected ${range}`);
    }
    return n;
  };
}
