/**
 * A client of QEMU's machine protocol (QMP) over a Unix socket: one JSON object per line, a
 * greeting, `qmp_capabilities`, then commands answered in order. QEMU serves one client per
 * socket (a second one connects and then waits silently), so each QEMU gets one of these.
 *
 * @module
 */

/** An error QEMU answered a command with. */
export class QmpError extends Error {
  constructor(readonly command: string, readonly qmpClass: string, desc: string) {
    super(`QEMU refused "${command}": ${desc} (${qmpClass})`);
    this.name = "QmpError";
  }
}

/** Longest line accepted from QEMU: answers of the commands used here are small. */
const MAX_LINE = 1 << 20;

/** A QMP connection. Commands are sent one at a time, in the order they are called. */
export class Qmp implements Disposable {
  #conn: Deno.UnixConn;
  #lines: AsyncIterator<string>;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  private constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
    this.#lines = readLines(conn.readable);
  }

  /**
   * Connects to the QMP socket at `path` (retrying while QEMU has not created it yet, up to
   * `timeoutMs`) and leaves capabilities negotiation.
   */
  static async connect(path: string, timeoutMs = 10_000): Promise<Qmp> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const conn = await Deno.connect({ transport: "unix", path });
        const qmp = new Qmp(conn);
        try {
          const greeting = await qmp.#next(timeoutMs);
          if (!("QMP" in greeting)) {
            throw new Error(`not a QMP greeting: ${JSON.stringify(greeting)}`);
          }
          await qmp.execute("qmp_capabilities");
          return qmp;
        } catch (error) {
          qmp.close();
          throw error;
        }
      } catch (error) {
        if (
          !(error instanceof Deno.errors.NotFound || error instanceof Deno.errors.ConnectionRefused)
        ) {
          throw error;
        }
        if (Date.now() > deadline) {
          throw new Error(`Cannot connect to QMP at ${path}: ${(error as Error).message}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  }

  /**
   * Runs `command` with `args` and resolves with its `return` value.
   * @throws {QmpError} when QEMU answers with an error.
   * @throws {Error} when QEMU does not answer within `timeoutMs` or the socket closes.
   */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    timeoutMs = 30_000,
  ): Promise<T> {
    const run = this.#queue.then(async () => {
      const line = JSON.stringify(
        args ? { execute: command, arguments: args } : { execute: command },
      );
      await writeAll(this.#conn, new TextEncoder().encode(line + "\n"));
      for (;;) {
        const message = await this.#next(timeoutMs, command);
        // Events arrive between answers; nothing here waits for them.
        if ("event" in message) continue;
        if ("error" in message) {
          const error = message.error as { class?: string; desc?: string };
          throw new QmpError(command, String(error.class), String(error.desc));
        }
        if ("return" in message) return message.return as T;
      }
    });
    this.#queue = run.catch(() => {});
    return run;
  }

  /** Runs an HMP (human monitor) command line through QMP and returns its output. */
  human(commandLine: string): Promise<string> {
    return this.execute<string>("human-monitor-command", { "command-line": commandLine });
  }

  async #next(timeoutMs: number, what = "the greeting"): Promise<Record<string, unknown>> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`QEMU did not answer "${what}" within ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      const { value, done } = await Promise.race([this.#lines.next(), timeout]);
      if (done) throw new Error(`QEMU closed its QMP socket before answering "${what}"`);
      const message = JSON.parse(value);
      if (typeof message !== "object" || message === null || Array.isArray(message)) {
        throw new Error(`QEMU sent ${value.slice(0, 200)}, not a JSON object`);
      }
      return message;
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // already closed by QEMU
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

/** The lines of `stream`, each at most {@linkcode MAX_LINE} characters. */
async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    rest += chunk;
    let end: number;
    while ((end = rest.indexOf("\n")) >= 0) {
      yield rest.slice(0, end).replace(/\r$/, "");
      rest = rest.slice(end + 1);
    }
    if (rest.length > MAX_LINE) throw new Error(`QEMU sent a line of more than ${MAX_LINE} bytes`);
  }
}
