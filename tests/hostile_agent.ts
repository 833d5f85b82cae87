/**
 * A hostile agent for tests: it speaks the real protocol over the real channel (TLS 1.3, a
 * certificate of the pairing CA) and lies in one chosen way per connection, cycling through its
 * lies, so that the IDS's defences are tried end to end. The guest it pretends to be is a
 * synthetic kernel image laid out with the offsets of this machine's BTF: init_task and a few
 * tasks, served byte for byte by READ, or a copy of it with a task list that loops or holds a
 * non-canonical pointer (`_hostile_images.ts`). Each connection's answers, lie included, are
 * `_hostile_liar.ts`'s.
 *
 * Run as a program (`deno run -A tests/hostile_agent.ts --state DIR --listen HOST:PORT
 * --lies a,b,c`) it prints `hostile agent listening on HOST:PORT` on standard error, then one
 * line per lie served.
 *
 * @module
 */

import { type Channel, ensureAgentCredentials, listenChannel } from "../protocol/mod.ts";
import { makeImages } from "./_hostile_images.ts";
import { Liar } from "./_hostile_liar.ts";

/**
 * Every way this agent lies, and the limit of the IDS each one must trip (the `limit` of the
 * `AgentMisbehaviorError` the IDS raises), or, for lies told with memory, the problem the view
 * must report. Written here, from the protocol's rules, not from the IDS's code.
 */
export const LIES = {
  /** Tells the truth: a guest the IDS can take snapshots of. */
  honest: undefined,
  /** HELLO announces a BTF one byte over the protocol's cap. */
  "huge-btf": "frame",
  /** GET_BTF is answered with the first chunk again and again. */
  "endless-btf": "btfChunk",
  /** PREFETCH is answered with 64 KiB records, without end. */
  "endless-data": "maxBytes",
  /** PREFETCH is answered with records of one byte, without end. */
  "one-byte-records": "maxObjects",
  /** READ is answered with bytes after the ones asked for. */
  "outside-read": "readRange",
  /** PREFETCH is answered with a record at a user-space address. */
  "outside-kernel": "kernelHalf",
  /** READ is answered under another request's id. */
  "wrong-id": "requestId",
  /** PREFETCH is answered with a BTF chunk. */
  "wrong-type": "frameType",
  /** PREFETCH is answered with one record and then nothing: no END. */
  "no-end": "idleTimeout",
  /** PREFETCH is answered with one tiny DATA frame at a time, forever, each in time. */
  "slow-drip": "requestTimeout",
  /** PREFETCH is answered one byte at a time, a frame never finished. */
  "byte-drip": "idleTimeout",
  /** PREFETCH is answered with a frame header announcing 16 MiB. */
  "huge-frame": "frame",
  /** PREFETCH is answered with a carried run of records the IDS never received. */
  "carried-run": "carried",
  /** LOAD is answered with two LOADED frames. */
  "loaded-twice": "answers",
  /** The task list loops back to an earlier task instead of init_task. */
  "task-cycle": "memory",
  /** A task's `tasks.next` holds a non-canonical address. */
  "non-canonical": "memory",
  /**
   * HELLO reports 5-level paging on a guest whose kernel uses 4 levels: its `page_offset_base`
   * holds the 4-level direct map's base.
   */
  "wrong-paging": "addressSpace",
} as const;
export type Lie = keyof typeof LIES;

/** Options of {@linkcode HostileAgent.start}. */
export interface HostileOptions {
  /** A state directory with the pairing CA (`ca.pem`, `ca.key`): its agent identity is used. */
  stateDir: string;
  hostname?: string;
  /** @default 0 (a free port) */
  port?: number;
  /** The lies told, one per connection, in turn. @default every lie */
  lies?: readonly Lie[];
  /** How often the slow drip sends. @default 200 */
  dripMs?: number;
  /**
   * A connection whose lie leaves it up (honest, and the lies told with memory) is closed when
   * the IDS sends PREFETCH number `closeAfter + 1`, so that the next lie gets its turn.
   * @default 2
   */
  closeAfter?: number;
  /** Told which lie each connection gets. */
  log?: (line: string) => void;
}

/** A listening hostile agent. Close it to drop every connection. */
export class HostileAgent implements AsyncDisposable {
  /** How many connections got each lie. */
  readonly served = new Map<Lie, number>();
  #connections = 0;
  #channels = new Set<Channel>();
  #timers = new Set<ReturnType<typeof setTimeout>>();
  #closed = false;

  private constructor(
    readonly hostname: string,
    readonly port: number,
    readonly close: () => Promise<void>,
  ) {}

  /** Starts listening; resolves once it does. */
  static async start(options: HostileOptions): Promise<HostileAgent> {
    const credentials = await ensureAgentCredentials(options.stateDir);
    const { btf, images } = await makeImages();
    const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", btf));
    const lies = options.lies ?? (Object.keys(LIES) as Lie[]);
    const log = options.log ?? (() => {});
    // The server is made first; its callbacks reach the agent made around it.
    const made: { agent?: HostileAgent } = {};
    const server = await listenChannel({
      hostname: options.hostname ?? "127.0.0.1",
      port: options.port ?? 0,
      credentials,
      onChannel: (channel) => {
        const self = made.agent!;
        const lie = lies[self.#connections++ % lies.length];
        self.served.set(lie, (self.served.get(lie) ?? 0) + 1);
        log(`hostile agent: connection ${self.#connections} gets "${lie}"`);
        self.#channels.add(channel);
        channel.closed.then(() => self.#channels.delete(channel));
        const session = new Liar(self, channel, lie, btf, hash, images, {
          dripMs: options.dripMs ?? 200,
          closeAfter: options.closeAfter ?? 2,
        });
        return session.serve().catch(() => channel.close());
      },
    });
    const agent = new HostileAgent(server.hostname, server.port, async () => {
      agent.#closed = true;
      for (const timer of agent.#timers) clearTimeout(timer);
      for (const channel of agent.#channels) channel.close();
      await server.close();
    });
    made.agent = agent;
    return agent;
  }

  /** `HOST:PORT` for a guest's `agent`. */
  get address(): string {
    return `${this.hostname}:${this.port}`;
  }

  /** Waits `ms`, unless the agent closes first (then false). */
  sleep(ms: number): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        resolve(!this.#closed);
      }, ms);
      this.#timers.add(timer);
    });
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

if (import.meta.main) {
  const args = Deno.args;
  const value = (name: string) => {
    const at = args.indexOf(name);
    if (at < 0 || at + 1 >= args.length) throw new Error(`Cannot start: ${name} is missing`);
    return args[at + 1];
  };
  const [hostname, port] = value("--listen").split(":");
  const lies = args.includes("--lies") ? value("--lies").split(",") as Lie[] : undefined;
  for (const lie of lies ?? []) {
    if (!(lie in LIES)) throw new Error(`Cannot start: unknown lie "${lie}"`);
  }
  const agent = await HostileAgent.start({
    stateDir: value("--state"),
    hostname,
    port: Number(port),
    lies,
    log: (line) => console.error(line),
  });
  console.error(`hostile agent listening on ${agent.address}`);
  Deno.addSignalListener("SIGTERM", () => agent.close().then(() => Deno.exit(0)));
}
