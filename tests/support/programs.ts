/**
 * The project's programs run as users run them: `deno run` of an entry point from the project's
 * root, with the permissions its compiled binary has, standard input closed.
 *
 * @module
 */

import { IDS_PERMISSIONS } from "../../ids/cli/mod.ts";

const root = new URL("../..", import.meta.url);

/** How a program exited and what it printed. */
export interface ProgramRun {
  code: number;
  stdout: string;
  stderr: string;
  /** Standard output as bytes, for what must be checked before any decoding. */
  stdoutBytes: Uint8Array;
}

/** Runs `deno run PERMISSIONS MAIN ARGS` (`main` relative to the project's root). */
export async function runEntry(
  main: string,
  permissions: readonly string[],
  args: string[],
  env: Record<string, string> = {},
): Promise<ProgramRun> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...permissions, main, ...args],
    cwd: root,
    env,
    stdin: "null",
  }).output();
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code, stdout: text(stdout), stderr: text(stderr), stdoutBytes: stdout };
}

/** Runs `ebpfmon-ids ARGS`: `ids/main.ts` with the IDS binary's permissions. */
export function runIds(args: string[]): Promise<ProgramRun> {
  return runEntry("ids/main.ts", IDS_PERMISSIONS, args);
}
