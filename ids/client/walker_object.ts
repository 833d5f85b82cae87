/**
 * The IDS's own in-guest programs: it sends the bytes of `bpf/out/walk.bpf.o` (built by
 * `deno task build:bpf`, embedded in `ebpfmon-ids` by `deno task compile`) to every agent it
 * connects to, which checks, loads and attaches them as that connection's walker (LOAD). An
 * agent's own default object, if it has one, is then never used by the IDS.
 *
 * @module
 */

import type { LoadAnswer, LoadedProgram } from "../../protocol/mod.ts";
import type { AgentClient } from "./client.ts";

/** Where the IDS's walker object is, for `deno run` and inside a compiled binary alike. */
export const WALKER_OBJECT = new URL("../../bpf/out/walk.bpf.o", import.meta.url);

let cached: Promise<Uint8Array> | undefined;

/** The bytes of {@linkcode WALKER_OBJECT}, read once. */
export function walkerObject(): Promise<Uint8Array> {
  cached ??= Deno.readFile(WALKER_OBJECT).catch((error) => {
    cached = undefined;
    throw new Error(
      `Cannot read the walker object "${WALKER_OBJECT.pathname}": ${error.message} (deno task build:bpf builds it)`,
      { cause: error },
    );
  });
  return cached;
}

/**
 * Loads the IDS's walker object (or `object`) through the agent, unless this connection already
 * loaded one: one round trip.
 * @throws {AgentLoadError} with the agent's reason when it refuses the object.
 */
export async function loadWalker(client: AgentClient, object?: Uint8Array): Promise<LoadAnswer> {
  if (client.loaded) return client.loaded;
  return await client.load(object ?? await walkerObject());
}

/** Loaded programs as a line of text: `name (type, tag)`, comma-separated. */
export function describeLoaded(programs: readonly LoadedProgram[]): string {
  return programs.length
    ? programs.map((p) => `${p.name} (${p.type}, ${p.tag})`).join(", ")
    : "no programs loaded";
}
