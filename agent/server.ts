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
 * This file holds the agent's start, each connection's life and the dispatch of its frames. The
 * walker's queue, and writes that give way to a peer waiting for it, are `_walker_queue.ts`'s;
 * the answers of memory (READ, PREFETCH) are `_memory_answers.ts`'s, and those of the kernel's
 * files (GET_BTF, SYMBOLS) `_file_answers.ts`'s.
 *
 * @module
 */

import {
  type AgentInfo,
  type Channel,
  type ChannelServer,
  EMPTY_END_STATS,
  encodeFrame,
  ensureAgentCredentials,
  ErrorCode,
  FEATURE_PACKED_PLANS,
  type Frame,
  FRAME_HEADER,
  FrameDecoder,
  FrameError,
  FrameType,
  frameTypeName,
  LIMITS,
  listenChannel,
  parseFrame,
  PROTOCOL_VERSION,
  type RawFrame,
} from "../protocol/mod.ts";
import { endFrame, errorFrame } from "./_closing_frames.ts";
import { sendBtf, sendSymbols } from "./_file_answers.ts";
import { kernelFeatures } from "./_kernel_facts.ts";
import { limitLog } from "./_log_limit.ts";
import { MemoryAnswers } from "./_memory_answers.ts";
import { ChannelGone, WalkerQueue } from "./_walker_queue.ts";
import { answerHold, Holder } from "./hold.ts";
import { LoadedObjects } from "./objects.ts";
import { describePrograms, Walker } from "./walker.ts";

/** Requests are tiny: anything bigger than this from the IDS is refused unread. */
const MAX_REQUEST_FRAME = 64 << 10;
/** But for LOAD, whose object may be up to LIMITS.maxObject (type, id, object size, object). */
const MAX_FRAME_OF = new Map([[FrameType.LOAD, FRAME_HEADER - 4 + 4 + LIMITS.maxObject]]);

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
  #queue: WalkerQueue;
  #memory: MemoryAnswers;
  #channels = new Set<Channel>();
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
    this.#queue = new WalkerQueue(log);
    this.#memory = new MemoryAnswers({
      queue: this.#queue,
      objects,
      walker,
      features: info.features,
    });
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
        // What the kernel offers, and what this agent's protocol does beyond its first version.
        features: [...await kernelFeatures(), FEATURE_PACKED_PLANS],
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
    this.#queue.track(channel);
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
        await this.#queue.send(channel, errorFrame(0, error.code, error.message)).catch(() => {});
      } else if (!(error instanceof ChannelGone)) {
        this.#log(`closing ${channel.remote}: ${(error as Error).message}`);
      }
    } finally {
      this.#holder?.forget(channel);
      this.#channels.delete(channel);
      this.#memory.forget(channel);
      channel.close();
      // What the connection loaded goes with it, once no walk of it runs.
      await this.#queue.serial(channel, () => this.#objects.unload(channel), false).catch(() => {});
    }
  }

  /** Tells a peer over the connection cap why it is not served, and closes its channel. */
  async #turnAway(channel: Channel): Promise<void> {
    const reason = `${this.#maxConnections} connections are already open (the connection cap)`;
    this.#log(`refused ${channel.remote}: ${reason}`);
    const message = `Cannot serve "${channel.remote}": ${reason}`;
    await this.#queue.send(channel, errorFrame(0, ErrorCode.NOT_READY, message)).catch(() => {});
    channel.close();
  }

  /** Serves one frame; returns whether the peer has completed the handshake. */
  async #handle(channel: Channel, raw: RawFrame, greeted: boolean): Promise<boolean> {
    let frame: Frame;
    try {
      frame = parseFrame(raw);
    } catch (error) {
      if (!(error instanceof FrameError)) throw error;
      await this.#queue.send(channel, errorFrame(raw.id, error.code, error.message));
      return greeted;
    }
    if (frame.type === FrameType.HELLO) {
      if (frame.version !== PROTOCOL_VERSION) {
        await this.#queue.send(
          channel,
          errorFrame(
            frame.id,
            ErrorCode.BAD_VERSION,
            `Cannot talk protocol version ${frame.version}: this agent speaks ${PROTOCOL_VERSION}`,
          ),
        );
        throw new ChannelGone();
      }
      await this.#queue.send(
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
      await this.#queue.send(
        channel,
        errorFrame(frame.id, ErrorCode.NOT_READY, "Cannot serve a request before HELLO"),
      );
      return false;
    }
    switch (frame.type) {
      case FrameType.GET_BTF:
        await sendBtf(
          (bytes) => this.#queue.send(channel, bytes),
          frame.id,
          this.#btfPath,
          this.#info.btfSize,
        );
        break;
      case FrameType.READ:
        await this.#memory.read(channel, frame.id, frame.addr, frame.len);
        break;
      case FrameType.PREFETCH:
        await this.#memory.prefetch(channel, frame);
        break;
      case FrameType.LOAD: {
        const { id, object } = frame;
        const answer = await this.#queue.serial(
          channel,
          () => this.#objects.load(channel, id, object),
        );
        for (const bytes of answer) await this.#queue.send(channel, bytes);
        break;
      }
      case FrameType.UNLOAD: {
        const unloaded = await this.#queue.serial(channel, () => this.#objects.unload(channel));
        await this.#queue.send(
          channel,
          endFrame(frame.id, { ...EMPTY_END_STATS, objects: unloaded }),
        );
        break;
      }
      case FrameType.HOLD:
      case FrameType.RELEASE:
        for (const answer of await answerHold(this.#holder, channel, frame)) {
          await this.#queue.send(channel, encodeFrame(answer));
        }
        break;
      case FrameType.SYMBOLS:
        await sendSymbols((bytes) => this.#queue.send(channel, bytes), frame);
        break;
      default:
        await this.#queue.send(
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

  /** Stops listening, closes every connection, unloads the programs. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#holder?.dispose();
    for (const channel of this.#channels) channel.close();
    await this.#server?.close();
    await this.#queue.idle;
    await this.#objects.close();
    this.#walker?.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
