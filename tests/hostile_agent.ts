/**
 * A hostile agent for tests: it speaks the real protocol over the real channel (TLS 1.3, a
 * certificate of the pairing CA) and lies in one chosen way per connection, cycling through its
 * lies, so that the IDS's defences are tried end to end. The guest it pretends to be is a
 * synthetic kernel image laid out with the offsets of this machine's BTF: init_task and a few
 * tasks, served byte for byte by READ, or a copy of it with a task list that loops or holds a
 * non-canonical pointer.
 *
 * Run as a program (`deno run -A tests/hostile_agent.ts --state DIR --listen HOST:PORT
 * --lies a,b,c`) it prints `hostile agent listening on HOST:PORT` on standard error, then one
 * line per lie served.
 *
 * @module
 */

import {
  type AgentInfo,
  type Channel,
  DataFrameBuilder,
  EMPTY_END_STATS,
  encodeFrame,
  ensureAgentCredentials,
  ErrorCode,
  FEATURE_LA57,
  type Frame,
  FrameDecoder,
  FrameType,
  LIMITS,
  listenChannel,
  parseFrame,
  PROTOCOL_VERSION,
} from "../protocol/mod.ts";
import { parseBtf } from "../ids/btf/mod.ts";
import { resolveKernelTypes } from "../ids/linux/mod.ts";
import { AddressSpace, type MemoryCache } from "../ids/memory/mod.ts";
import { SyntheticKernel } from "../ids/linux/testing/mod.ts";

const space = AddressSpace.FOUR_LEVEL;

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

/** Memory images the agent serves. */
interface Images {
  honest: MemoryCache;
  cycle: MemoryCache;
  noncanonical: MemoryCache;
  anchor: bigint;
  /** The region bases of a 4-level kernel, by the addresses of their variables in the images. */
  bases: Map<string, bigint>;
}

/** What a 4-level kernel keeps in its region bases (without KASLR). */
const FOUR_LEVEL_BASES = {
  page_offset_base: 0xffff888000000000n,
  vmalloc_base: 0xffffc90000000000n,
  vmemmap_base: 0xffffea0000000000n,
};

/** This machine's BTF, and images laid out with it. */
async function makeImages(): Promise<{ btf: Uint8Array<ArrayBuffer>; images: Images }> {
  const btf = await Deno.readFile("/sys/kernel/btf/vmlinux");
  const types = resolveKernelTypes(parseBtf(btf));
  const specs = [
    { pid: 1, comm: "init" },
    { pid: 2, comm: "kthreadd", kthread: true },
    { pid: 100, comm: "sshd", uid: 0 },
    { pid: 200, comm: "worker", uid: 1000, gid: 1000 },
  ];
  const honest = new SyntheticKernel(types, specs);
  const cycle = new SyntheticKernel(types, specs);
  // The last task leads back to the second one: a loop that never reaches init_task again.
  cycle.mutate(cycle.tasks[3], { tasksNext: cycle.entry(cycle.tasks[1]) });
  const noncanonical = new SyntheticKernel(types, specs);
  noncanonical.mutate(noncanonical.tasks[2], { tasksNext: { raw: 0x0000_1234_5678_9000n } });
  // The bases' variables sit side by side in the kernel image, after init_task.
  const bases = new Map<string, bigint>();
  Object.entries(FOUR_LEVEL_BASES).forEach(([name, value], i) => {
    const at = honest.initTask + 0x10_0000 + i * 8;
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setBigUint64(0, value, true);
    honest.placeBytes(bytes, at);
    bases.set(name, space.fromKAddr(at));
  });
  return {
    btf,
    images: {
      honest: honest.build(),
      cycle: cycle.build(),
      noncanonical: noncanonical.build(),
      anchor: space.fromKAddr(honest.tasks[2]),
      bases,
    },
  };
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

/** One connection: answers requests, telling its lie where it applies. */
class Liar {
  #told = false;
  #prefetches = 0;
  constructor(
    readonly agent: HostileAgent,
    readonly channel: Channel,
    readonly lie: Lie,
    readonly btf: Uint8Array,
    readonly hash: Uint8Array,
    readonly images: Images,
    readonly options: { dripMs: number; closeAfter: number },
  ) {}

  get #image(): MemoryCache {
    if (this.lie === "task-cycle") return this.images.cycle;
    if (this.lie === "non-canonical") return this.images.noncanonical;
    return this.images.honest;
  }

  async serve(): Promise<void> {
    const decoder = new FrameDecoder();
    for await (const chunk of this.channel.chunks()) {
      decoder.push(chunk);
      for (let raw = decoder.next(); raw; raw = decoder.next()) {
        await this.#answer(parseFrame(raw));
      }
    }
  }

  #send(frame: Frame | Uint8Array): Promise<void> {
    return this.channel.write(frame instanceof Uint8Array ? frame : encodeFrame(frame));
  }

  /** True once, for the first request the lie applies to. */
  #tell(lie: Lie): boolean {
    if (this.lie !== lie || this.#told) return false;
    this.#told = true;
    return true;
  }

  async #answer(frame: Frame): Promise<void> {
    switch (frame.type) {
      case FrameType.HELLO:
        return this.#hello(frame.id);
      case FrameType.GET_BTF:
        return this.#sendBtf(frame.id);
      case FrameType.READ:
        return this.#read(frame.id, frame.addr, frame.len);
      case FrameType.PREFETCH:
        return this.#prefetch(frame.id);
      case FrameType.LOAD: {
        // Whatever the object, it is "loaded": the walker is the lie's memory images.
        const loaded = {
          anchor: this.images.anchor,
          programs: [
            { name: "walk_plan", section: "uprobe", type: "kprobe", tag: "0badc0de0badc0de" },
          ].map((p) => ({ ...p, instructions: 1 })),
        };
        await this.#send({ type: FrameType.LOADED, id: frame.id, loaded });
        if (this.#tell("loaded-twice")) {
          await this.#send({ type: FrameType.LOADED, id: frame.id, loaded });
        }
        return this.#end(frame.id);
      }
      case FrameType.SYMBOLS: {
        // The region bases are where they are only to the guest that lies about its paging.
        const at = (n: string) => this.lie === "wrong-paging" ? this.images.bases.get(n) ?? 0n : 0n;
        await this.#send(
          "names" in frame
            ? { type: FrameType.SYMBOLS, id: frame.id, symbols: frame.names.map((n) => [n, at(n)]) }
            : { type: FrameType.SYMBOLS, id: frame.id, at: [] },
        );
        return this.#end(frame.id);
      }
      default:
        return this.#send({
          type: FrameType.ERROR,
          id: frame.id,
          code: ErrorCode.BAD_FRAME,
          message: "not a request",
        });
    }
  }

  async #hello(id: number): Promise<void> {
    const agent: AgentInfo = {
      kernelRelease: "6.18.0-hostile",
      btfHash: this.hash,
      btfSize: this.btf.length,
      bootId: "00000000-0000-4000-8000-000000000bad",
      anchor: this.images.anchor,
      agentPid: 100,
      programs: "hostile",
      features: this.lie === "wrong-paging" ? [FEATURE_LA57] : [],
    };
    if (this.#tell("huge-btf")) {
      agent.btfSize = LIMITS.maxBtf + 1;
      // encodeFrame checks nothing of the size: the lie goes out as it is.
    }
    if (this.lie === "endless-btf") {
      // A hash the IDS has never stored, so that it asks for the BTF.
      agent.btfHash = crypto.getRandomValues(new Uint8Array(32));
    }
    await this.#send({ type: FrameType.HELLO, id, version: PROTOCOL_VERSION, agent });
  }

  async #sendBtf(id: number): Promise<void> {
    const chunk = (offset: number) => ({
      type: FrameType.BTF,
      id,
      offset,
      total: this.btf.length,
      bytes: this.btf.subarray(offset, offset + LIMITS.dataFrame),
    } as const);
    if (this.#tell("endless-btf")) {
      while (!this.agent.isClosed) await this.#send(chunk(0));
      return;
    }
    for (let offset = 0; offset < this.btf.length; offset += LIMITS.dataFrame) {
      await this.#send(chunk(offset));
    }
    await this.#end(id);
  }

  async #read(id: number, addr: bigint, len: number): Promise<void> {
    const at = space.toKAddr(addr);
    if (at === undefined || len > LIMITS.maxRead) {
      await this.#send({ type: FrameType.ERROR, id, code: ErrorCode.FAULT, message: "bad read" });
      return;
    }
    const bytes = readImage(this.#image, at, len);
    const builder = new DataFrameBuilder();
    if (this.#tell("outside-read")) {
      builder.append(addr + BigInt(len), bytes);
    } else {
      builder.append(addr, bytes);
    }
    const answerId = this.#tell("wrong-id") ? id + 7 : id;
    await this.#send(builder.take(answerId));
    await this.#end(answerId);
  }

  async #prefetch(id: number): Promise<void> {
    const base = space.fromKAddr(0x0888_0000_0000);
    switch (this.lie) {
      case "endless-data": {
        const builder = new DataFrameBuilder();
        const record = new Uint8Array(64 << 10);
        let addr = base;
        while (builder.append(addr, record)) addr += BigInt(record.length);
        const frame = builder.take(id);
        while (!this.agent.isClosed) await this.#send(frame);
        return;
      }
      case "one-byte-records": {
        const builder = new DataFrameBuilder();
        const one = new Uint8Array(1);
        for (let addr = base; builder.append(addr, one); addr += 8n);
        const frame = builder.take(id);
        while (!this.agent.isClosed) await this.#send(frame);
        return;
      }
      case "outside-kernel": {
        const builder = new DataFrameBuilder();
        builder.append(0x0000_7fff_0000_0000n, new Uint8Array(64));
        await this.#send(builder.take(id));
        return this.#end(id);
      }
      case "wrong-type":
        return this.#send({
          type: FrameType.BTF,
          id,
          offset: 0,
          total: 16,
          bytes: new Uint8Array(16),
        });
      case "no-end": {
        const builder = new DataFrameBuilder();
        builder.append(base, new Uint8Array(64));
        return this.#send(builder.take(id));
      }
      case "slow-drip": {
        const builder = new DataFrameBuilder();
        builder.append(base, new Uint8Array(8));
        const frame = builder.take(id);
        while (await this.agent.sleep(this.options.dripMs)) await this.#send(frame);
        return;
      }
      case "byte-drip": {
        const builder = new DataFrameBuilder();
        builder.append(base, new Uint8Array(4096));
        const frame = builder.take(id);
        for (let i = 0; i < frame.length && await this.agent.sleep(50); i++) {
          await this.#send(frame.slice(i, i + 1));
        }
        return;
      }
      case "carried-run": {
        const builder = new DataFrameBuilder();
        builder.appendCarried(0, 1000);
        await this.#send(builder.take(id));
        return this.#end(id);
      }
      case "huge-frame": {
        const header = new Uint8Array(9);
        const view = new DataView(header.buffer);
        view.setUint32(0, 16 << 20, true);
        view.setUint8(4, FrameType.DATA);
        view.setUint32(5, id, true);
        return this.#send(header);
      }
      default:
        if (++this.#prefetches > this.options.closeAfter) {
          this.channel.close();
          return;
        }
        // Honest: no prefetched memory; the IDS reads what it needs, page by page.
        return this.#end(id);
    }
  }

  #end(id: number): Promise<void> {
    return this.#send({
      type: FrameType.END,
      id,
      stats: EMPTY_END_STATS,
    });
  }
}

/** `len` bytes of `image` at `at`: what is placed there, zeros around it. */
function readImage(image: MemoryCache, at: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len;) {
    const step = Math.min(8, len - i);
    const bytes = image.get(at + i, step);
    if (bytes) {
      out.set(bytes, i);
      i += step;
      continue;
    }
    const one = image.get(at + i, 1);
    if (one) out[i] = one[0];
    i++;
  }
  return out;
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
