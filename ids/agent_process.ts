/**
 * Starts an agent as a child process of this one, through the `agent` command, and waits until
 * it listens. Used by `local` (agent and IDS on one machine) and by the tests.
 *
 * @module
 */

/** Options of {@linkcode spawnAgent}. */
export interface SpawnOptions {
  stateDir: string;
  /** @default "127.0.0.1:0" (a free port) */
  listen?: string;
  /** More arguments for the agent command. */
  args?: string[];
  /** Give up waiting for "listening on" after this long. @default 30000 */
  timeoutMs?: number;
  /** Where the agent's log lines go after start-up. @default dropped */
  log?: (line: string) => void;
}

/** A running agent process. Stop it with {@linkcode AgentProcess.stop}. */
export interface AgentProcess extends AsyncDisposable {
  hostname: string;
  port: number;
  pid: number;
  /** `HOST:PORT` for `--agent`. */
  address: string;
  /** Sends SIGTERM (or `signal`) and waits for the process to exit. Idempotent. */
  stop(signal?: Deno.Signal): Promise<void>;
}

const MAIN = new URL("../main.ts", import.meta.url);

/** How to run `main.ts <args>`: through `deno run` or, in a compiled binary, directly. */
export function selfCommand(args: string[]): { cmd: string; args: string[] } {
  const exe = Deno.execPath();
  const compiled = !/(^|\/)deno$/.test(exe);
  return compiled ? { cmd: exe, args } : { cmd: exe, args: ["run", "-A", MAIN.href, ...args] };
}

/**
 * Spawns `main.ts agent --listen ... --state ...` and resolves once it listens.
 * @throws {Error} with the agent's output when it exits or does not listen in time.
 */
export async function spawnAgent(options: SpawnOptions): Promise<AgentProcess> {
  const self = selfCommand([
    "agent",
    "--listen",
    options.listen ?? "127.0.0.1:0",
    "--state",
    options.stateDir,
    ...(options.args ?? []),
  ]);
  const child = new Deno.Command(self.cmd, {
    args: self.args,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines = child.stderr.pipeThrough(new TextDecoderStream()).pipeThrough(splitLines());
  const reader = lines.getReader();
  const seen: string[] = [];
  const timeoutMs = options.timeoutMs ?? 30_000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`Agent did not listen within ${timeoutMs} ms:\n${seen.join("\n")}`)),
      timeoutMs,
    );
  });
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  try {
    for (;;) {
      const { value, done } = await Promise.race([reader.read(), timeout]);
      if (done) {
        const s = await status;
        throw new Error(`Agent exited with code ${s.code} before listening:\n${seen.join("\n")}`);
      }
      seen.push(value);
      const match = / listening on (\S+):(\d+) /.exec(value);
      if (match) {
        clearTimeout(timer);
        const hostname = match[1].replace(/^\[|\]$/g, "");
        const port = Number(match[2]);
        (async () => {
          for (;;) {
            const { value, done } = await reader.read().catch(() => ({ value: "", done: true }));
            if (done) break;
            options.log?.(value);
          }
        })();
        const stop = async (signal: Deno.Signal = "SIGTERM") => {
          if (!exited) {
            try {
              child.kill(signal);
            } catch {
              // already gone
            }
          }
          await status;
        };
        return {
          hostname,
          port,
          pid: child.pid,
          address: hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`,
          stop,
          [Symbol.asyncDispose]: () => stop(),
        };
      }
    }
  } catch (error) {
    clearTimeout(timer);
    if (!exited) child.kill("SIGKILL");
    await status;
    throw error;
  }
}

function splitLines(): TransformStream<string, string> {
  let rest = "";
  return new TransformStream({
    transform(chunk, controller) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      for (const line of parts) controller.enqueue(line);
    },
    flush(controller) {
      if (rest) controller.enqueue(rest);
    },
  });
}
