/**
 * Child processes of ebpfmon's own entry points, started with `deno run` and the permissions
 * their compiled binaries have, and awaited until they say they are ready. {@linkcode spawnAgent}
 * starts an agent; `local`, the benchmarks and the tests use it.
 *
 * @module
 */

import { AGENT_PERMISSIONS } from "./permissions.ts";

const AGENT_MAIN = new URL("./main.ts", import.meta.url);

/** A child process that printed its ready line. Stop it with {@linkcode ReadyProcess.stop}. */
export interface ReadyProcess extends AsyncDisposable {
  pid: number;
  /** The match of the ready pattern in the line that satisfied it. */
  ready: RegExpExecArray;
  /** Sends SIGTERM (or `signal`) and waits for the process to exit. Idempotent. */
  stop(signal?: Deno.Signal): Promise<void>;
}

/** Options of {@linkcode spawnReady}. */
export interface ReadyOptions {
  /** The entry point, run with `deno run`. */
  main: URL;
  permissions: readonly string[];
  args: string[];
  /** A line of standard error matching this means the process is ready. */
  ready: RegExp;
  /** Give up waiting after this long. @default 30000 */
  timeoutMs?: number;
  /** Where its standard error lines go after it is ready. @default dropped */
  log?: (line: string) => void;
}

/**
 * Runs `deno run PERMISSIONS MAIN ARGS` and resolves once a line of its standard error matches
 * `ready`.
 * @throws {Error} with the lines it printed when it exits or is not ready in time.
 */
export async function spawnReady(options: ReadyOptions): Promise<ReadyProcess> {
  const deno = Deno.execPath();
  if (!/(^|\/)deno$/.test(deno)) {
    throw new Error(
      `Cannot start "${options.main.pathname}": this process does not run under deno`,
    );
  }
  const child = new Deno.Command(deno, {
    args: ["run", ...options.permissions, options.main.href, ...options.args],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).pipeThrough(splitLines())
    .getReader();
  const seen: string[] = [];
  const timeoutMs = options.timeoutMs ?? 30_000;
  const name = options.main.pathname.split("/").slice(-2).join("/");
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(new Error(`"${name}" was not ready within ${timeoutMs} ms:\n${seen.join("\n")}`)),
      timeoutMs,
    );
  });
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const stop = async (signal: Deno.Signal = "SIGTERM") => {
    if (!exited) {
      try {
        child.kill(signal);
      } catch {
        // it exited meanwhile
      }
    }
    await status;
  };
  try {
    for (;;) {
      const { value, done } = await Promise.race([reader.read(), timeout]);
      if (done) {
        const { code } = await status;
        throw new Error(
          `"${name}" exited with status ${code} before it was ready:\n${seen.join("\n")}`,
        );
      }
      seen.push(value);
      const ready = options.ready.exec(value);
      if (!ready) continue;
      clearTimeout(timer);
      forward(reader, options.log);
      return { pid: child.pid, ready, stop, [Symbol.asyncDispose]: () => stop() };
    }
  } catch (error) {
    clearTimeout(timer);
    await stop("SIGKILL");
    throw error;
  }
}

async function forward(reader: ReadableStreamDefaultReader<string>, log?: (line: string) => void) {
  for (;;) {
    const { value, done } = await reader.read().catch(() => ({ value: "", done: true }));
    if (done) return;
    log?.(value);
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

/** Options of {@linkcode spawnAgent}. */
export interface SpawnOptions {
  stateDir: string;
  /** @default "127.0.0.1:0" (a free port) */
  listen?: string;
  /** More arguments for the agent. */
  args?: string[];
  /** Give up waiting for it to listen after this long. @default 30000 */
  timeoutMs?: number;
  /** Where its log lines go after start-up. @default dropped */
  log?: (line: string) => void;
}

/** A running agent process. */
export interface AgentProcess extends ReadyProcess {
  hostname: string;
  port: number;
  /** `HOST:PORT` for `--agent`. */
  address: string;
}

/**
 * Starts an agent (`agent/main.ts --listen ... --state ...`) and resolves once it listens.
 * @throws {Error} with the agent's output when it exits or does not listen in time.
 */
export async function spawnAgent(options: SpawnOptions): Promise<AgentProcess> {
  const process = await spawnReady({
    main: AGENT_MAIN,
    permissions: AGENT_PERMISSIONS,
    args: [
      "--listen",
      options.listen ?? "127.0.0.1:0",
      "--state",
      options.stateDir,
      ...(options.args ?? []),
    ],
    ready: / listening on (\S+):(\d+) /,
    timeoutMs: options.timeoutMs,
    log: options.log,
  });
  const hostname = process.ready[1].replace(/^\[|\]$/g, "");
  const port = Number(process.ready[2]);
  const address = hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
  return { ...process, hostname, port, address };
}
