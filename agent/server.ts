/**
 * The agent: serves the protocol over the authenticated channel, one request at a time per
 * connection, and one walker run at a time across connections.
 *
 * The network is hostile, so every resource a peer can hold is bounded, each limit has a default
 * in {@linkcode AgentOptions} (and a flag of the `agent` command), and each one that triggers
 * logs a line naming the peer and the limit:
 * - Before authentication (`protocol/listen_channel.ts` holds the policy): a handshake deadline, a cap
 *   on connections that have sent nothing yet, caps on TLS handshakes in progress in total and
 *   per source address, where a newcomer evicts the least advanced, oldest connection of its
 *   own address or of the address holding the most (so a flood cannot keep out an IDS that
 *   sends its ClientHello at once, even from the flood's own address), and a cap on the bytes
 *   read before authentication. Authenticated connections draw on capacity of their own, which
 *   no unauthenticated peer can take.
 * - After authentication: a cap on open connections (the one over it gets an ERROR and is
 *   closed), a bounded inbound buffer per connection (beyond it the agent stops reading the
 *   socket: backpressure, not buffering), a send deadline per write (a peer that does not read
 *   is dropped and its pending work discarded; the walker, which every connection waits for, is
 *   released within that deadline whatever the peer does), and an idle timeout.
 * - Loading (LOAD, `agent/objects.ts`): a LOAD frame of at most `LIMITS.maxObject` bytes (every
 *   other request 64 KiB), a cap on the objects one connection holds and on all of them, each
 *   object checked (`agent/bpf_check.ts`) before libbpf sees it, and unloaded with its
 *   connection.
 *
 * @module
 */

import {
  type AgentInfo,
  type Channel,
  type ChannelServer,
  DataFrameBuilder,
  decodePlan,
  EMPTY_END_STATS,
  encodeFrame,
  encodePlan,
  type EndStats,
  ensureAgentCredentials,
  ErrorCode,
  type Frame,
  FRAME_HEADER,
  FrameDecoder,
  FrameError,
  FrameType,
  frameTypeName,
  kernelHalfOf,
  LIMITS,
  listenChannel,
  parseFrame,
  PlanError,
  PrefetchTarget,
  PROTOCOL_VERSION,
  type RawFrame,
  StopReason,
} from "../protocol/mod.ts";
import { DeltaEncoder, type RememberedAnswer } from "./delta.ts";
import { answerHold, Holder } from "./hold.ts";
import { kernelFeatures, lookupNames, lookupSymbols } from "./_kernel_facts.ts";
import { limitLog } from "./_log_limit.ts";
import { LoadedObjects } from "./objects.ts";
import { describePrograms, type RunResult, Walker } from "./walker.ts";

/** Requests are tiny: anything bigger than this from the IDS is refused unread. */
const MAX_REQUEST_FRAME = 64 << 10;
/** But for LOAD, whose object may be up to LIMITS.maxObject (type, id, object size, object). */
const MAX_FRAME_OF = new Map([[FrameType.LOAD, FRAME_HEADER - 4 + 4 + LIMITS.maxObject]]);
const U64_END = 1n << 64n;

/** Options of {@linkcode Agent.start}. */
export interface AgentOptions {
  /** Address to listen on. @default "127.0.0.1" */
  hostname?: string;
  /** Port to listen on; 0 picks a free one. @default 7047 */
  port?: number;
  /** Directory holding the credentials (created on first use). */
  stateDir: string;
  /** Ring buffer size in bytes of each walker (walks larger than it are resumed). @default 2 MiB */
  ringBytes?: number;
  /** Where log lines go. @default stderr */
  log?: (line: string) => void;
  /** Path of the guest kernel's BTF. @default "/sys/kernel/btf/vmlinux" */
  btfPath?: string;
  /** Time a peer has to complete the TLS handshake. @default 3000 */
  handshakeTimeoutMs?: number;
  /** Connections that have sent nothing yet held at once. @default 1024 */
  maxSilentConnections?: number;
  /** TLS handshakes in progress at once. @default 256 */
  maxHandshakes?: number;
  /** TLS handshakes in progress at once from one address. @default 64 */
  maxHandshakesPerAddress?: number;
  /** Authenticated connections served at once. @default 16 */
  maxConnections?: number;
  /** Received bytes buffered per connection before the agent stops reading it. @default 1 MiB */
  maxInboundBytes?: number;
  /** Time one answer frame may wait for the peer to read it before the peer is dropped. @default 5000 */
  sendTimeoutMs?: number;
  /** Time an authenticated connection may stay silent both ways before it is closed. @default 300000 */
  idleTimeoutMs?: number;
  /**
   * Cgroup directories the IDS may ask to hold still (HOLD), the monitored workload's: each is
   * checked at start (`agent/hold_cgroup.ts`), and one that holds the agent itself is refused.
   * @default none: HOLD is answered with an ERROR
   */
  holdCgroups?: readonly string[];
  /** The longest a hold may last, whatever the IDS asks, 1..LIMITS.maxHoldMs. @default 10000 */
  maxHoldMs?: number;
  /**
   * Load the embedded `bpf/out/walk.bpf.o` at start, as the walker of connections that load none
   * of their own; false starts without one (HELLO's anchor is then 0, and a walker request before
   * a LOAD is answered with an ERROR). @default true
   */
  defaultObject?: boolean;
  /** Objects one connection may LOAD and hold at once. @default 4 */
  maxObjectsPerConnection?: number;
  /** Objects all connections may hold at once. @default 8 */
  maxObjects?: number;
}

/**
 * DATA frame bytes past which the agent sends what it has: the IDS decodes a frame while the
 * next is drained and encrypted, instead of waiting for a whole 1 MiB. It is where the agent's
 * CPU per byte sent stops falling: writes of one page cost 3.5 times as much per MiB, writes of
 * 256 KiB or 1 MiB no less (`deno task bench:encryption`).
 */
const FLUSH_AT = 64 << 10;

/**
 * A peer that takes none of a frame for this long while another peer's request waits for the
 * walker loses its connection.
 */
const YIELD_AFTER_MS = 1_000;

/** Default of {@linkcode AgentOptions.maxConnections}. */
const DEFAULT_MAX_CONNECTIONS = 16;

/** A running agent. Close it to stop listening, drop connections and unload the programs. */
export class Agent implements AsyncDisposable {
  /** The default walker (the embedded object), when the agent loaded one at start. */
  #walker: Walker | undefined;
  #objects: LoadedObjects;
  #server: ChannelServer | undefined;
  /**
   * Where the BTF is: read again for each GET_BTF (an IDS asks once per kernel it has not seen)
   * rather than held, 5-7 MB of the agent's RSS.
   */
  #btfPath: string;
  #info: AgentInfo;
  #log: (line: string) => void;
  #busy: Promise<unknown> = Promise.resolve();
  /** Requests queued for the walker behind the one it runs, by channel. */
  #waiting = new Map<Channel, number>();
  /** Reused by every request: requests run one at a time. */
  #builder = new DataFrameBuilder(undefined, FLUSH_AT);
  #channels = new Set<Channel>();
  /** Channels whose connection is gone: their queued walker runs are skipped. */
  #gone = new WeakSet<Channel>();
  /** Per connection: the generation its next delta answer gets, and its last one remembered. */
  #deltas = new Map<Channel, { next: number; answer?: RememberedAnswer }>();
  /** Each connection's last plan, as it came and as checked. */
  #plans = new WeakMap<Channel, { wire: Uint8Array; checked: Uint8Array }>();
  #maxConnections: number;
  #holder: Holder | undefined;
  #closed = false;

  private constructor(
    walker: Walker | undefined,
    objects: LoadedObjects,
    btfPath: string,
    info: AgentInfo,
    log: (line: string) => void,
    maxConnections: number,
    holder: Holder | undefined,
  ) {
    this.#holder = holder;
    this.#walker = walker;
    this.#objects = objects;
    this.#btfPath = btfPath;
    this.#info = info;
    this.#log = log;
    this.#maxConnections = maxConnections;
  }

  /**
   * Loads the walker, creates the credentials if needed and starts listening.
   * @throws {LibbpfError} when the kernel refuses the programs.
   */
  static async start(options: AgentOptions): Promise<Agent> {
    const log = options.log ?? ((line: string) => console.error(`ebpfmon-agent: ${line}`));
    const hostname = options.hostname ?? "127.0.0.1";
    const btfPath = options.btfPath ?? "/sys/kernel/btf/vmlinux";
    const btf = await Deno.readFile(btfPath);
    // What peers can trigger is rate-limited: a flood must not fill the guest's disk.
    const peerLog = limitLog(log);
    const holder = options.holdCgroups?.length
      ? Holder.open(options.holdCgroups, { maxHoldMs: options.maxHoldMs, log: peerLog })
      : undefined;
    const credentials = await ensureAgentCredentials(options.stateDir, { names: [hostname] });
    const walker = options.defaultObject === false
      ? undefined
      : await Walker.open({ ringBytes: options.ringBytes }).catch((error) => {
        holder?.dispose();
        throw error;
      });
    const objects = new LoadedObjects({
      maxPerConnection: options.maxObjectsPerConnection,
      maxTotal: options.maxObjects,
      ringBytes: options.ringBytes,
      log: peerLog,
    });
    try {
      const info: AgentInfo = {
        kernelRelease: Deno.osRelease(),
        btfHash: new Uint8Array(await crypto.subtle.digest("SHA-256", btf)),
        btfSize: btf.length,
        bootId: (await Deno.readTextFile("/proc/sys/kernel/random/boot_id")).trim(),
        anchor: walker?.anchor() ?? 0n,
        agentPid: Deno.pid,
        programs: describePrograms(walker?.programs ?? []),
        features: await kernelFeatures(),
      };
      const maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
      const agent = new Agent(walker, objects, btfPath, info, peerLog, maxConnections, holder);
      const server = await listenChannel({
        hostname,
        port: options.port ?? 7047,
        credentials,
        onChannel: (channel) => agent.#serve(channel),
        onRefused: (remote, reason) => peerLog(`refused ${remote}: ${reason}`),
        onLimit: (remote, reason) => peerLog(`dropped ${remote}: ${reason}`),
        onError: (error) => peerLog(`channel error: ${error.message}`),
        handshakeTimeoutMs: options.handshakeTimeoutMs,
        maxSilentConnections: options.maxSilentConnections,
        maxHandshakes: options.maxHandshakes,
        maxHandshakesPerAddress: options.maxHandshakesPerAddress,
        maxInboundBytes: options.maxInboundBytes,
        sendTimeoutMs: options.sendTimeoutMs,
        idleTimeoutMs: options.idleTimeoutMs,
      });
      agent.#server = server;
      for (const dir of holder?.dirs ?? []) log(`may hold cgroup ${dir}`);
      log(`listening on ${server.hostname}:${server.port} (pid ${Deno.pid}, ${info.programs})`);
      return agent;
    } catch (error) {
      holder?.dispose();
      walker?.close();
      throw error;
    }
  }

  get hostname(): string {
    return this.#server!.hostname;
  }

  get port(): number {
    return this.#server!.port;
  }

  async #serve(channel: Channel): Promise<void> {
    channel.closed.then(() => this.#gone.add(channel));
    if (this.#channels.size >= this.#maxConnections) {
      await this.#turnAway(channel);
      return;
    }
    this.#channels.add(channel);
    const decoder = new FrameDecoder({ maxFrame: MAX_REQUEST_FRAME, maxFrameOf: MAX_FRAME_OF });
    let greeted = false;
    try {
      for await (const chunk of channel.chunks()) {
        decoder.push(chunk);
        for (let raw = decoder.next(); raw; raw = decoder.next()) {
          greeted = await this.#handle(channel, raw, greeted);
        }
      }
    } catch (error) {
      if (error instanceof FrameError && error.fatal) {
        this.#log(`closing ${channel.remote}: ${error.message}`);
        await this.#send(channel, errorFrame(0, error.code, error.message)).catch(() => {});
      } else if (!(error instanceof ChannelGone)) {
        this.#log(`closing ${channel.remote}: ${(error as Error).message}`);
      }
    } finally {
      this.#holder?.forget(channel);
      this.#channels.delete(channel);
      this.#deltas.delete(channel);
      channel.close();
      // What the connection loaded goes with it, once no walk of it runs.
      await this.#serial(channel, () => this.#objects.unload(channel), false).catch(() => {});
    }
  }

  /** Tells a peer over the connection cap why it is not served, and closes its channel. */
  async #turnAway(channel: Channel): Promise<void> {
    const reason = `${this.#maxConnections} connections are already open (the connection cap)`;
    this.#log(`refused ${channel.remote}: ${reason}`);
    const message = `Cannot serve "${channel.remote}": ${reason}`;
    await this.#send(channel, errorFrame(0, ErrorCode.NOT_READY, message)).catch(() => {});
    channel.close();
  }

  /** Serves one frame; returns whether the peer has completed the handshake. */
  async #handle(channel: Channel, raw: RawFrame, greeted: boolean): Promise<boolean> {
    let frame: Frame;
    try {
      frame = parseFrame(raw);
    } catch (error) {
      if (!(error instanceof FrameError)) throw error;
      await this.#send(channel, errorFrame(raw.id, error.code, error.message));
      return greeted;
    }
    if (frame.type === FrameType.HELLO) {
      if (frame.version !== PROTOCOL_VERSION) {
        await this.#send(
          channel,
          errorFrame(
            frame.id,
            ErrorCode.BAD_VERSION,
            `Cannot talk protocol version ${frame.version}: this agent speaks ${PROTOCOL_VERSION}`,
          ),
        );
        throw new ChannelGone();
      }
      await this.#send(
        channel,
        encodeFrame({
          type: FrameType.HELLO,
          id: frame.id,
          version: PROTOCOL_VERSION,
          agent: this.#info,
        }),
      );
      return true;
    }
    if (!greeted) {
      await this.#send(
        channel,
        errorFrame(frame.id, ErrorCode.NOT_READY, "Cannot serve a request before HELLO"),
      );
      return false;
    }
    switch (frame.type) {
      case FrameType.GET_BTF:
        await this.#sendBtf(channel, frame.id);
        break;
      case FrameType.READ:
        await this.#read(channel, frame.id, frame.addr, frame.len);
        break;
      case FrameType.PREFETCH:
        await this.#prefetch(channel, frame);
        break;
      case FrameType.LOAD: {
        const { id, object } = frame;
        const answer = await this.#serial(channel, () => this.#objects.load(channel, id, object));
        for (const bytes of answer) await this.#send(channel, bytes);
        break;
      }
      case FrameType.UNLOAD: {
        const unloaded = await this.#serial(channel, () => this.#objects.unload(channel));
        await this.#send(channel, endFrame(frame.id, { ...EMPTY_END_STATS, objects: unloaded }));
        break;
      }
      case FrameType.HOLD:
      case FrameType.RELEASE:
        for (const answer of await answerHold(this.#holder, channel, frame)) {
          await this.#send(channel, encodeFrame(answer));
        }
        break;
      case FrameType.SYMBOLS: {
        const asked = "addresses" in frame
          ? frame.addresses.length
          : "names" in frame
          ? frame.names.length
          : undefined;
        if (asked === undefined) {
          await this.#send(
            channel,
            errorFrame(
              frame.id,
              ErrorCode.BAD_FRAME,
              "Cannot serve SYMBOLS: it carries neither names nor addresses",
            ),
          );
          break;
        }
        await this.#send(
          channel,
          encodeFrame(
            "addresses" in frame
              ? { type: FrameType.SYMBOLS, id: frame.id, at: await lookupNames(frame.addresses) }
              : {
                type: FrameType.SYMBOLS,
                id: frame.id,
                symbols: await lookupSymbols((frame as { names: string[] }).names),
              },
          ),
        );
        await this.#send(
          channel,
          endFrame(frame.id, { ...EMPTY_END_STATS, objects: asked }),
        );
        break;
      }
      default:
        await this.#send(
          channel,
          errorFrame(
            frame.id,
            ErrorCode.BAD_FRAME,
            `Cannot serve a ${frameTypeName(frame.type)} frame: it is not a request`,
          ),
        );
    }
    return true;
  }

  async #sendBtf(channel: Channel, id: number): Promise<void> {
    const started = performance.now();
    const btf = await Deno.readFile(this.#btfPath);
    if (btf.length !== this.#info.btfSize) {
      const message = `Cannot send the BTF: ${this.#btfPath} is ${btf.length} bytes now, ` +
        `${this.#info.btfSize} at start`;
      await this.#send(channel, errorFrame(id, ErrorCode.INTERNAL, message));
      return;
    }
    for (let offset = 0; offset < btf.length; offset += LIMITS.dataFrame) {
      const bytes = btf.subarray(offset, offset + LIMITS.dataFrame);
      await this.#send(
        channel,
        encodeFrame({ type: FrameType.BTF, id, offset, total: btf.length, bytes }),
      );
    }
    await this.#send(
      channel,
      endFrame(id, {
        ...EMPTY_END_STATS,
        objects: 1,
        bytes: btf.length,
        agentNs: Math.round((performance.now() - started) * 1e6),
      }),
    );
  }

  async #read(channel: Channel, id: number, addr: bigint, len: number): Promise<void> {
    const problem = len === 0
      ? "length is 0"
      : len > LIMITS.maxRead
      ? `length ${len} exceeds ${LIMITS.maxRead}`
      : addr < kernelHalfOf(this.#info.features) || addr + BigInt(len) > U64_END
      ? `[0x${addr.toString(16)}, +${len}) is not in the kernel half`
      : undefined;
    if (problem) {
      const code = len > LIMITS.maxRead ? ErrorCode.TOO_LARGE : ErrorCode.FAULT;
      await this.#send(channel, errorFrame(id, code, `Cannot read: ${problem}`));
      return;
    }
    await this.#exclusive(
      channel,
      id,
      (walker) => walker.read(addr, len),
      (result) =>
        result.stop === StopReason.COMPLETE
          ? undefined
          : `Cannot read ${len} bytes at 0x${addr.toString(16)}: kernel read failed (errno ${-result
            .error})`,
    );
  }

  async #prefetch(
    channel: Channel,
    frame: Extract<Frame, { type: typeof FrameType.PREFETCH }>,
  ): Promise<void> {
    const { id, maxObjects, maxBytes } = frame;
    if (maxObjects > LIMITS.maxRecords || maxBytes > LIMITS.maxPrefetchBytes) {
      await this.#send(
        channel,
        errorFrame(
          id,
          ErrorCode.TOO_LARGE,
          `Cannot prefetch ${maxObjects} objects / ${maxBytes} bytes: limits are ${LIMITS.maxRecords} / ${LIMITS.maxPrefetchBytes}`,
        ),
      );
      return;
    }
    const limits = { maxObjects, maxBytes };
    if (frame.target === PrefetchTarget.TASKS) {
      await this.#exclusive(
        channel,
        id,
        (walker) => walker.walkTasks(limits),
        () => undefined,
        this.#deltaFor(channel, frame.delta),
      );
      return;
    }
    let plan: Uint8Array;
    try {
      plan = this.#checkedPlan(channel, frame.plan);
    } catch (error) {
      if (!(error instanceof PlanError)) throw error;
      await this.#send(
        channel,
        errorFrame(id, ErrorCode.BAD_FRAME, `Cannot serve PREFETCH: ${error.message}`),
      );
      return;
    }
    await this.#exclusive(
      channel,
      id,
      (walker) => walker.walkPlan(plan, limits),
      () => undefined,
      this.#deltaFor(channel, frame.delta),
    );
  }

  /**
   * The plan of a PREFETCH as the walker takes it. Decoding checks every limit and reference;
   * encoding it again hands the walker the checked plan with every unused byte zeroed, in a
   * buffer of its own. A connection's refreshes send the same plan again and again: the same
   * bytes as its last are that plan, checked already.
   * @throws {PlanError} naming what is wrong with it.
   */
  #checkedPlan(channel: Channel, wire: Uint8Array): Uint8Array {
    const last = this.#plans.get(channel);
    if (last && sameBytes(last.wire, wire)) return last.checked;
    const checked = encodePlan(decodePlan(wire));
    this.#plans.set(channel, { wire: wire.slice(), checked });
    return checked;
  }

  /**
   * The encoder of a PREFETCH that asked for a delta: against what this connection's last delta
   * answer remembered when `base` is its generation, else whole. Either way what was remembered
   * is forgotten now: the answer being made replaces it (or nothing does, if it fails).
   */
  #deltaFor(channel: Channel, delta: { base: number } | undefined): DeltaEncoder | undefined {
    if (!delta) return undefined;
    let state = this.#deltas.get(channel);
    if (!state) this.#deltas.set(channel, state = { next: 1 });
    const base = delta.base !== 0 && state.answer?.generation === delta.base
      ? state.answer
      : undefined;
    state.answer = undefined;
    return new DeltaEncoder(base, state.next++);
  }

  /**
   * Runs `work` once every walker request queued before it is done: walker runs, loads and
   * unloads happen one at a time, across connections. With `live` (the default), work for a peer
   * that is gone by then is not run.
   */
  #serial<T>(channel: Channel, work: () => T | Promise<T>, live = true): Promise<T> {
    this.#waiting.set(channel, (this.#waiting.get(channel) ?? 0) + 1);
    const task = this.#busy.then(() => {
      const left = this.#waiting.get(channel)! - 1;
      if (left) this.#waiting.set(channel, left);
      else this.#waiting.delete(channel);
      // A peer dropped while it waited for the walker gets nothing run on its behalf.
      if (live && this.#gone.has(channel)) throw new ChannelGone();
      return work();
    });
    this.#busy = task.catch(() => {});
    return task;
  }

  /**
   * Runs one walker request with the walker to itself (the last object this connection loaded,
   * else the default one), streams its records as DATA frames and closes with END (or ERROR when
   * `failure` names a problem, or there is no walker).
   */
  #exclusive(
    channel: Channel,
    id: number,
    run: (walker: Walker) => RunResult,
    failure: (result: RunResult) => string | undefined,
    delta?: DeltaEncoder,
  ): Promise<void> {
    return this.#serial(channel, async () => {
      const walker = this.#objects.walkerOf(channel) ?? this.#walker;
      if (!walker) {
        const message = "Cannot walk: this agent was started without a default object, and this " +
          "connection loaded none (send LOAD first)";
        await this.#send(channel, errorFrame(id, ErrorCode.NOT_READY, message));
        return;
      }
      const started = performance.now();
      let result = run(walker);
      const problem = failure(result);
      if (problem) {
        walker.discard();
        await this.#send(channel, errorFrame(id, ErrorCode.FAULT, problem));
        return;
      }
      const builder = this.#builder;
      // The last DATA frame goes with END in one write: an on-demand READ is then one write and
      // one TLS record, about 30% less of the agent's CPU per READ than two (bench:encryption).
      let last: Uint8Array | undefined;
      let more = true;
      try {
        while (more) {
          more = walker.drainInto(builder, delta);
          // A walk the full ring stopped goes on once its records are out of the ring.
          const resumed = more ? undefined : walker.resume();
          if (resumed) [result, more] = [resumed, true];
          if (!builder.records) continue;
          if (more) await this.#send(channel, builder.take(id));
          else last = builder.take(id);
        }
      } finally {
        walker.discard();
      }
      const end = endFrame(id, {
        objects: result.objects,
        bytes: result.bytes,
        faults: result.faults,
        pruned: result.pruned,
        guestNs: result.guestNs,
        agentNs: Math.round((performance.now() - started) * 1e6),
        stop: result.stop as StopReason,
        root: result.root,
        ...(delta ? this.#remember(channel, delta) : {}),
      });
      await this.#send(channel, last ? joined(last, end) : end);
    });
  }

  /** Keeps the answer `delta` framed as the connection's base for the next delta; END's fields. */
  #remember(channel: Channel, delta: DeltaEncoder): Pick<EndStats, "generation" | "carried"> {
    const state = this.#deltas.get(channel);
    if (!state || !delta.complete) return { generation: 0, carried: delta.carried };
    state.answer = delta.answer();
    return { generation: state.answer.generation, carried: delta.carried };
  }

  /**
   * Writes `bytes` to `channel`. A peer that takes none of them for {@linkcode YIELD_AFTER_MS}
   * while another peer's request waits for the walker is dropped then, not at its send deadline: a
   * connection that now leads nowhere (its guest was migrated, its network broke) must not keep
   * the walker from the IDS that connected again.
   */
  async #send(channel: Channel, bytes: Uint8Array): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const watch = () => {
      timer = setTimeout(() => {
        const others = [...this.#waiting.keys()].some((c) => c !== channel && !this.#gone.has(c));
        if (!others) return watch();
        const reason = `it took no frame for ${YIELD_AFTER_MS} ms while another peer waited`;
        this.#log(`dropped ${channel.remote}: ${reason}`);
        channel.abort(reason);
      }, YIELD_AFTER_MS);
    };
    watch();
    try {
      await channel.write(bytes);
    } catch {
      throw new ChannelGone();
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stops listening, closes every connection, unloads the programs. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#holder?.dispose();
    for (const channel of this.#channels) channel.close();
    await this.#server?.close();
    await this.#busy;
    await this.#objects.close();
    this.#walker?.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** The peer went away while we were writing to it. */
class ChannelGone extends Error {}

function errorFrame(id: number, code: number, message: string): Uint8Array {
  return encodeFrame({ type: FrameType.ERROR, id, code, message });
}

function endFrame(id: number, stats: EndStats): Uint8Array {
  return encodeFrame({ type: FrameType.END, id, stats });
}

/** Two frames in one buffer, for one write. */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function joined(first: Uint8Array, second: Uint8Array): Uint8Array {
  const both = new Uint8Array(first.length + second.length);
  both.set(first);
  both.set(second, first.length);
  return both;
}
