/**
 * What the agent's and the IDS's command lines share: where agents listen and where state
 * lives by default, parsing of `HOST:PORT` arguments, and how a program reports a failure.
 *
 * @module
 */

/** What {@linkcode runProgram} needs of a command (commander's `Command`). */
export interface Program {
  parseAsync(argv: readonly string[], options: { from: "user" }): Promise<unknown>;
}

/** The agent's default listening address (and where the IDS looks for it). */
export const DEFAULT_AGENT_ADDRESS = "127.0.0.1:7047";

/** Default state directory: `$EBPFMON_STATE`, else `.ebpfmon` in the working directory. */
export const DEFAULT_STATE = Deno.env.get("EBPFMON_STATE") ?? ".ebpfmon";

/** A parsed `HOST:PORT` (IPv6 hosts in brackets: `[::1]:7047`). */
export interface HostPort {
  hostname: string;
  port: number;
}

/** Parses `HOST:PORT`. @throws {TypeError} naming the bad value. */
export function parseHostPort(value: string, what = "address"): HostPort {
  const match = /^(?:\[([^\]]+)\]|([^:\[\]]+)):(\d{1,5})$/.exec(value.trim());
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) {
    throw new TypeError(`Invalid ${what} "${value}": expected HOST:PORT with a port of 0..65535`);
  }
  return { hostname: match[1] ?? match[2], port };
}

/**
 * Runs a command-line program on `Deno.args`; a failure prints one line, `NAME: message`, and
 * exits with status 1.
 */
export async function runProgram(program: Program, name: string): Promise<void> {
  try {
    await program.parseAsync(Deno.args, { from: "user" });
  } catch (error) {
    console.error(`${name}: ${(error as Error).message}`);
    Deno.exit(1);
  }
}
