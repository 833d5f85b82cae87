/**
 * Running the host's tools for the guest build: a failure throws with the command and its output.
 *
 * @module
 */

/** Options of {@linkcode run}. */
export interface RunOptions {
  cwd?: string;
  env?: Record<string, string>;
  /** Bytes written to its standard input. */
  stdin?: Uint8Array;
}

/**
 * Runs `cmd args` and returns its standard output.
 * @throws {Error} naming the command (and the package to install when it is missing) and
 * quoting its standard error when it fails.
 */
export async function run(cmd: string, args: string[], options: RunOptions = {}): Promise<string> {
  return new TextDecoder().decode(await runBytes(cmd, args, options));
}

/** Runs `cmd args` as {@linkcode run} does, and returns its standard output's bytes. */
export async function runBytes(
  cmd: string,
  args: string[],
  options: RunOptions = {},
): Promise<Uint8Array<ArrayBuffer>> {
  let child;
  try {
    child = new Deno.Command(cmd, {
      args,
      cwd: options.cwd,
      env: options.env,
      stdin: options.stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(`Cannot run "${cmd}": not installed (./dev setup installs it)`);
    }
    throw error;
  }
  if (options.stdin) {
    const writer = child.stdin.getWriter();
    await writer.write(options.stdin);
    await writer.close();
  }
  const { success, code, stdout, stderr } = await child.output();
  if (!success) {
    const detail = new TextDecoder().decode(stderr).trim();
    throw new Error(
      `"${cmd} ${args.join(" ")}" failed with code ${code}${detail ? `:\n${detail}` : ""}`,
    );
  }
  return stdout;
}
