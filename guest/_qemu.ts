/**
 * One QEMU process of the test guest: started with its console on QEMU's stdio and a QMP socket,
 * its console lines kept and handed to whoever waits for them, quit or killed. A guest that
 * migrates runs in several, one after another (guest/boot.ts).
 *
 * @module
 */

import { parseAnswerMarker, parseEvent } from "./console.ts";
import { Qmp } from "./qmp.ts";

const CONSOLE_LINES = 2000;

/** One QEMU process of the guest: its console (QEMU's stdio) and its QMP socket. */
export interface Qemu {
  process: Deno.ChildProcess;
  stdin: WritableStreamDefaultWriter<Uint8Array>;
  console: ConsoleLines;
  /** The QMP connection, made on first use. */
  qmp(): Promise<Qmp>;
  /** Asks QEMU to quit through QMP and waits for it to exit (killed after 10 s). */
  quit(): Promise<void>;
  /** Kills QEMU (if running) and waits for its output to end. */
  kill(): Promise<void>;
}

export function spawnQemu(
  args: string[],
  network: string,
  qmpPath: string,
  log?: (line: string) => void,
): Qemu {
  const process = new Deno.Command("qemu-system-x86_64", {
    args: [...args, "-netdev", network, "-qmp", `unix:${qmpPath},server=on,wait=off`],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const console = new ConsoleLines(process, log);
  let qmp: Promise<Qmp> | undefined;
  const kill = async () => {
    try {
      process.kill("SIGKILL");
    } catch {
      // already gone
    }
    await process.status;
    await console.closed;
    (await qmp?.catch(() => undefined))?.close();
  };
  return {
    process,
    stdin: process.stdin.getWriter(),
    console,
    qmp: () => qmp ??= Qmp.connect(qmpPath),
    async quit() {
      const timer = setTimeout(() => kill(), 10_000);
      await (qmp ??= Qmp.connect(qmpPath)).then((q) => q.execute("quit")).catch(() => {});
      await process.status;
      clearTimeout(timer);
      await kill();
    },
    kill,
  };
}

/** QEMU's output, split into lines, kept (the last ones) and handed to whoever waits for them. */
export class ConsoleLines {
  #lines: string[] = [];
  #waiters = new Set<(line: string) => void>();
  #exited: string | undefined;
  #onExit = new Set<() => void>();
  readonly closed: Promise<void>;

  constructor(qemu: Deno.ChildProcess, log?: (line: string) => void) {
    const read = async (stream: ReadableStream<Uint8Array>) => {
      let rest = "";
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        const parts = (rest + chunk).split("\n");
        rest = parts.pop()!;
        for (const part of parts) this.#push(part.replace(/\r$/, ""), log);
      }
      if (rest) this.#push(rest, log);
    };
    this.closed = Promise.all([read(qemu.stdout), read(qemu.stderr)]).then(async () => {
      const { code } = await qemu.status;
      this.#exited = `QEMU exited with status ${code}`;
      for (const f of this.#onExit) f();
    });
  }

  #push(line: string, log?: (line: string) => void): void {
    log?.(line);
    this.#lines.push(line);
    if (this.#lines.length > CONSOLE_LINES) this.#lines.shift();
    for (const waiter of [...this.#waiters]) waiter(line);
  }

  /** The fields of every `@@ebpfmon KEY ...` line seen so far. */
  events(key: string): Record<string, string>[] {
    return this.#lines.map((l) => parseEvent(l, key)).filter((e) => e !== null);
  }

  tail(lines = 60): string {
    return this.#lines.slice(-lines).join("\n");
  }

  /** Resolves with the first line (from now on, or already seen) that `match` accepts. */
  waitFor<T>(match: (line: string) => T | null, timeoutMs: number, what: string): Promise<T> {
    for (const line of this.#lines) {
      const found = match(line);
      if (found) return Promise.resolve(found);
    }
    return this.#wait(timeoutMs, what, (line, resolve) => {
      const found = match(line);
      if (found) resolve(found);
    });
  }

  /** The lines between `@@ebpfmon KIND ID begin` and `... end`. */
  answer(kind: string, id: string, timeoutMs: number): Promise<string[]> {
    let lines: string[] | undefined;
    return this.#wait(timeoutMs, `the guest's "${kind}" answer`, (line, resolve) => {
      const marker = parseAnswerMarker(line);
      if (marker && marker.kind === kind && marker.id === id) {
        if (marker.edge === "begin") lines = [];
        else if (lines) resolve(lines);
      } else if (lines && line.startsWith("@@") && !line.startsWith("@@ebpfmon")) {
        lines.push(line);
      }
    });
  }

  #wait<T>(
    timeoutMs: number,
    what: string,
    onLine: (line: string, resolve: (value: T) => void) => void,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(waiter);
        this.#onExit.delete(exited);
      };
      const fail = (reason: string) => {
        done();
        reject(new Error(`Cannot wait for ${what}: ${reason}. The console said:\n${this.tail()}`));
      };
      const timer = setTimeout(() => fail(`nothing within ${timeoutMs} ms`), timeoutMs);
      const waiter = (line: string) =>
        onLine(line, (value) => {
          done();
          resolve(value);
        });
      const exited = () => fail(this.#exited!);
      if (this.#exited) return fail(this.#exited);
      this.#waiters.add(waiter);
      this.#onExit.add(exited);
    });
  }
}
