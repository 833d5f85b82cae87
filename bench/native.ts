/**
 * The benchmark's native helpers (`link.c`, `idle.c`, `churn.c`), built with clang into a
 * temporary folder and run as child processes: the emulated link (a relay that holds every chunk
 * for half the round-trip time in each direction), the probe that measures a link, the idle
 * processes that grow the guest's process list, and the churning workload of `bench:hold`.
 *
 * Every helper exits when its standard input closes, so none outlives the benchmark, however the
 * benchmark ends. {@linkcode startBench} builds them for a benchmark, with its state folder and
 * the stop on SIGINT or SIGTERM.
 *
 * @module
 */

const SOURCES = ["link", "idle", "churn"] as const;

/** The built helpers. Dispose to remove them. */
export interface NativeTools extends AsyncDisposable {
  link: string;
  idle: string;
  churn: string;
}

/**
 * Builds the helpers with clang.
 * @throws {Error} when clang is missing or a helper does not compile.
 */
export async function buildNative(): Promise<NativeTools> {
  const dir = await Deno.makeTempDir({ prefix: "ebpfmon-bench-native-" });
  const remove = () => Deno.remove(dir, { recursive: true });
  try {
    for (const name of SOURCES) {
      const source = new URL(`${name}.c`, import.meta.url).pathname;
      const args = ["-O2", "-Wall", "-Wextra", "-Werror", "-o", `${dir}/${name}`, source];
      const { success, stderr } = await new Deno.Command("clang", { args, stderr: "piped" })
        .output();
      if (!success) {
        throw new Error(`Cannot build "${source}":\n${new TextDecoder().decode(stderr)}`);
      }
    }
  } catch (error) {
    await remove();
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(`Cannot build the benchmark's helpers: clang is not installed`);
    }
    throw error;
  }
  return {
    link: `${dir}/link`,
    idle: `${dir}/idle`,
    churn: `${dir}/churn`,
    [Symbol.asyncDispose]: remove,
  };
}

/** A running helper that speaks in lines on its standard output. */
class LineChild implements AsyncDisposable {
  #child: Deno.ChildProcess;
  #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #lines: ReadableStreamDefaultReader<string>;
  #buffered = "";

  constructor(path: string, args: string[]) {
    this.#child = new Deno.Command(path, {
      args,
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#stdin = this.#child.stdin.getWriter();
    this.#lines = this.#child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  }

  get pid(): number {
    return this.#child.pid;
  }

  async send(line: string): Promise<void> {
    await this.#stdin.write(new TextEncoder().encode(`${line}\n`));
  }

  /** The next line it prints. @throws {Error} when it exits first. */
  async line(): Promise<string> {
    for (;;) {
      const end = this.#buffered.indexOf("\n");
      if (end >= 0) {
        const line = this.#buffered.slice(0, end);
        this.#buffered = this.#buffered.slice(end + 1);
        return line;
      }
      const { value, done } = await this.#lines.read();
      if (done) throw new Error(`Helper ${this.#child.pid} exited: ${await this.#child.status}`);
      this.#buffered += value;
    }
  }

  /** Closes its standard input (it then exits) and waits for it. Idempotent. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.#stdin.close().catch(() => {});
    await this.#lines.cancel().catch(() => {});
    await this.#child.status;
  }
}

/** A helper listening on a loopback port. */
export interface Listener extends AsyncDisposable {
  port: number;
  pid: number;
}

async function listening(child: LineChild): Promise<Listener> {
  try {
    const match = /^listening (\d+)$/.exec(await child.line());
    if (!match) throw new Error(`Helper ${child.pid} did not say which port it listens on`);
    return {
      port: Number(match[1]),
      pid: child.pid,
      [Symbol.asyncDispose]: () => child[Symbol.asyncDispose](),
    };
  } catch (error) {
    await child[Symbol.asyncDispose]();
    throw error;
  }
}

/**
 * Starts a relay on a free loopback port to `127.0.0.1:targetPort` that holds every chunk
 * `holdUs` microseconds in each direction.
 */
export function startRelay(
  tools: NativeTools,
  targetPort: number,
  holdUs: number,
): Promise<Listener> {
  return listening(
    new LineChild(tools.link, ["relay", String(Math.round(holdUs)), String(targetPort)]),
  );
}

/** Starts the far end of link probes. */
export function startProbeEndpoint(tools: NativeTools): Promise<Listener> {
  return listening(new LineChild(tools.link, ["serve"]));
}

/** What a probe measured over one link. */
export interface LinkProbe {
  /** Microseconds of each one-byte round trip. */
  rttUs: number[];
  /** Microseconds of each bulk transfer, from asking for `bulkBytes` to the last of them. */
  bulkUs: number[];
  bulkBytes: number;
}

/** Measures the link to a probe endpoint at `port` (directly or through a relay). */
export async function probeLink(
  tools: NativeTools,
  port: number,
  options: { pings: number; bulkBytes: number; bulks: number },
): Promise<LinkProbe> {
  const args = [
    "probe",
    String(port),
    String(options.pings),
    String(options.bulkBytes),
    String(options.bulks),
  ];
  const { success, stdout } = await new Deno.Command(tools.link, { args, stderr: "inherit" })
    .output();
  if (!success) throw new Error(`Cannot probe the link on port ${port}`);
  const measured = JSON.parse(new TextDecoder().decode(stdout));
  return { rttUs: measured.rttUs, bulkUs: measured.bulkUs, bulkBytes: options.bulkBytes };
}

/** Idle child processes, grown or shrunk on request. Dispose to kill them all. */
export class IdleProcesses implements AsyncDisposable {
  #child: LineChild;
  #count = 0;

  private constructor(child: LineChild) {
    this.#child = child;
  }

  static start(tools: NativeTools): IdleProcesses {
    return new IdleProcesses(new LineChild(tools.idle, []));
  }

  /** How many idle processes there are, besides their parent. */
  get count(): number {
    return this.#count;
  }

  /** The parent of the idle processes (itself a process of the list). */
  get pid(): number {
    return this.#child.pid;
  }

  /**
   * Keeps exactly `count` idle processes alive.
   * @throws {Error} when they cannot all be started (the limit on processes is reached).
   */
  async resize(count: number): Promise<void> {
    await this.#child.send(String(count));
    const answer = await this.#child.line();
    if (answer !== `ready ${count}`) {
      throw new Error(`Cannot start ${count} idle processes: ${answer}`);
    }
    this.#count = count;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#child[Symbol.asyncDispose]();
  }
}

/**
 * The churning workload (`churn.c`): `rate` workers a second, each forking a child, at most
 * `max` processes alive. It waits for {@linkcode Churn.go} (move it into a cgroup first: its
 * processes are born there). Dispose to kill them all.
 */
export class Churn implements AsyncDisposable {
  #child: LineChild;

  private constructor(child: LineChild) {
    this.#child = child;
  }

  static start(tools: NativeTools, rate: number, max: number): Churn {
    return new Churn(new LineChild(tools.churn, [String(rate), String(max)]));
  }

  /** The parent of every process of the workload. */
  get pid(): number {
    return this.#child.pid;
  }

  async go(): Promise<void> {
    await this.#child.send("go");
    const answer = await this.#child.line();
    if (answer !== "going") throw new Error(`The churning workload did not start: ${answer}`);
  }

  /** Processes it has forked so far. Waits while it is frozen. */
  async forks(): Promise<number> {
    await this.#child.send("count");
    const match = /^forks (\d+)$/.exec(await this.#child.line());
    if (!match) throw new Error("The churning workload did not say how many it forked");
    return Number(match[1]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#child[Symbol.asyncDispose]();
  }
}

/** What a benchmark holds while it runs. Dispose to stop and remove all of it. */
export interface BenchRun extends AsyncDisposable {
  /** What the benchmark starts goes here, to be stopped in reverse order. */
  stack: AsyncDisposableStack;
  tools: NativeTools;
  /** A fresh folder for the agents' and the service's state. */
  state: string;
  /** Set once SIGINT or SIGTERM came: everything is being stopped, then the process exits. */
  interrupted(): Promise<void> | undefined;
}

/**
 * Starts a benchmark: the native helpers built, a state folder made (named from `prefix`), and
 * SIGINT or SIGTERM stopping what the benchmark started before it exits with status 130.
 */
export async function startBench(prefix: string): Promise<BenchRun> {
  const stack = new AsyncDisposableStack();
  let interrupted: Promise<void> | undefined;
  const stop = () => {
    interrupted ??= stack.disposeAsync().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  stack.defer(() => {
    Deno.removeSignalListener("SIGINT", stop);
    Deno.removeSignalListener("SIGTERM", stop);
  });
  try {
    const tools = stack.use(await buildNative());
    const state = await Deno.makeTempDir({ prefix });
    stack.defer(() => Deno.remove(state, { recursive: true }));
    return {
      stack,
      tools,
      state,
      interrupted: () => interrupted,
      [Symbol.asyncDispose]: () => stack.disposeAsync(),
    };
  } catch (error) {
    await stack.disposeAsync();
    throw error;
  }
}
