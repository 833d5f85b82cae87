/**
 * The IDS side of the protocol: one authenticated connection to one agent.
 *
 * Requests may be issued concurrently; each resolves when its END (or ERROR) arrives. The client
 * counts round trips (requests) and the frame bytes it receives, for the stats of every view.
 *
 * @module
 */

import { type Channel, connectChannel } from "../protocol/channel.ts";
import type { IdsCredentials } from "../protocol/credentials.ts";
import {
  type AgentInfo,
  dataRecords,
  encodeFrame,
  type EndStats,
  forEachRecord,
  type Frame,
  FrameDecoder,
  FrameError,
  FrameType,
  frameTypeName,
  LIMITS,
  parseFrame,
  type PrefetchTarget,
  PROTOCOL_VERSION,
} from "../protocol/frames.ts";

/** The agent answered a request with ERROR, or broke the protocol. */
export class AgentError extends Error {
  /** The ERROR frame's code, or 0 for a protocol violation seen by the IDS. */
  readonly code: number;
  constructor(message: string, code: number, options?: ErrorOptions) {
    super(message, options);
    this.name = "AgentError";
    this.code = code;
  }
}

/** Counters of one client, cumulative since connect. */
export interface ClientCounters {
  /** Requests sent (each costs one round trip). */
  roundTrips: number;
  /** Frame bytes received from the agent. */
  bytes: number;
}

/** Options of {@linkcode AgentClient.connect}. */
export interface ConnectOptions {
  hostname: string;
  port: number;
  credentials: IdsCredentials;
  /** Connect and handshake timeout. @default 10000 */
  timeoutMs?: number;
  /** Per-request timeout: an agent that stops answering fails the request. @default 30000 */
  requestTimeoutMs?: number;
}

/**
 * Counts what some requests cost, e.g. one snapshot's, however many other requests run on the
 * same connection meanwhile.
 */
export interface Meter {
  roundTrips: number;
  bytes: number;
}

interface Pending {
  onFrame(frame: Frame): void;
  fail(error: Error): void;
  meter?: Meter;
}

/** A connection to one agent. Close it when done. */
export class AgentClient implements Disposable {
  #channel: Channel;
  #pending = new Map<number, Pending>();
  #nextId = 1;
  #counters: ClientCounters = { roundTrips: 0, bytes: 0 };
  #closed: Error | undefined;
  #requestTimeoutMs: number;
  #info: AgentInfo | undefined;
  #ended = Promise.withResolvers<Error>();

  private constructor(channel: Channel, requestTimeoutMs: number) {
    this.#channel = channel;
    this.#requestTimeoutMs = requestTimeoutMs;
    this.#pump();
  }

  /**
   * Connects, authenticates and exchanges HELLO.
   * @throws {ChannelError} when the agent cannot be reached or authenticated.
   * @throws {AgentError} when the agent refuses the protocol version.
   */
  static async connect(options: ConnectOptions): Promise<AgentClient> {
    const channel = await connectChannel({
      hostname: options.hostname,
      port: options.port,
      credentials: options.credentials,
      timeoutMs: options.timeoutMs ?? 10_000,
    });
    const client = new AgentClient(channel, options.requestTimeoutMs ?? 30_000);
    try {
      const hello = await client.#request(
        { type: FrameType.HELLO, id: 0, version: PROTOCOL_VERSION },
        undefined,
        (frame) => frame.type === FrameType.HELLO,
      );
      if (hello.type !== FrameType.HELLO || !hello.agent) {
        throw new AgentError("Cannot use the agent: its HELLO carries no agent information", 0);
      }
      if (hello.version !== PROTOCOL_VERSION) {
        throw new AgentError(
          `Cannot talk to the agent: it speaks protocol version ${hello.version}, not ${PROTOCOL_VERSION}`,
          0,
        );
      }
      client.#info = hello.agent;
      return client;
    } catch (error) {
      client.close();
      throw error;
    }
  }

  /** What the agent reported in its HELLO. */
  get info(): AgentInfo {
    return this.#info!;
  }

  /** Resolves with the reason once the connection is closed, by either side. */
  get closed(): Promise<Error> {
    return this.#ended.promise;
  }

  /** A copy of the cumulative counters. */
  get counters(): ClientCounters {
    return { ...this.#counters };
  }

  /**
   * The guest kernel's BTF, as the agent sent it, checked against the hash from HELLO.
   * @throws {AgentError} when the bytes do not match the hash or the chunks do not add up.
   */
  async btf(onProgress?: (received: number, total: number) => void): Promise<Uint8Array> {
    let out: Uint8Array<ArrayBuffer> | undefined;
    let received = 0;
    await this.#stream({ type: FrameType.GET_BTF, id: 0 }, undefined, (frame) => {
      if (frame.type !== FrameType.BTF) return false;
      if (frame.total !== this.info.btfSize) {
        throw new AgentError(
          `BTF chunk says ${frame.total} bytes, HELLO said ${this.info.btfSize}`,
          0,
        );
      }
      out ??= new Uint8Array(frame.total);
      out.set(frame.bytes, frame.offset);
      received += frame.bytes.length;
      onProgress?.(received, frame.total);
      return true;
    });
    if (!out || received !== this.info.btfSize) {
      throw new AgentError(`Cannot use BTF: received ${received} of ${this.info.btfSize} bytes`, 0);
    }
    const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", out));
    if (!hash.every((b, i) => b === this.info.btfHash[i])) {
      throw new AgentError("Cannot use BTF: its SHA-256 differs from the hash in HELLO", 0);
    }
    return out;
  }

  /**
   * Reads guest kernel memory: one round trip.
   * @throws {AgentError} when the agent cannot read it (code FAULT) or answers inconsistently.
   */
  async read(addr: bigint, len: number, meter?: Meter): Promise<Uint8Array> {
    if (len <= 0 || len > LIMITS.maxRead) {
      throw new RangeError(`Cannot read ${len} bytes: the length must be 1..${LIMITS.maxRead}`);
    }
    const out = new Uint8Array(len);
    let filled = 0;
    await this.#stream({ type: FrameType.READ, id: 0, addr, len }, meter, (frame) => {
      if (frame.type !== FrameType.DATA) return false;
      for (const record of dataRecords(frame.payload, frame.id)) {
        const at = record.addr - addr;
        if (at < 0n || at + BigInt(record.bytes.length) > BigInt(len)) {
          throw new AgentError(
            `Agent answered READ of 0x${addr.toString(16)} with bytes at 0x${
              record.addr.toString(16)
            }`,
            0,
          );
        }
        out.set(record.bytes, Number(at));
        filled += record.bytes.length;
      }
      return true;
    });
    if (filled !== len) {
      throw new AgentError(`Agent answered READ of ${len} bytes with ${filled}`, 0);
    }
    return out;
  }

  /**
   * Asks the agent to walk `target` in the guest (for PLAN, the encoded `plan`) and stream the
   * memory: one round trip. `onRecord` gets each record's address, in two 32-bit halves, and its
   * bytes, a view of a received frame that may be kept.
   */
  prefetch(
    target: PrefetchTarget,
    limits: { maxObjects: number; maxBytes: number },
    onRecord: (high: number, low: number, bytes: Uint8Array) => void,
    plan: Uint8Array = new Uint8Array(),
    meter?: Meter,
  ): Promise<EndStats> {
    return this.#stream(
      { type: FrameType.PREFETCH, id: 0, target, ...limits, plan },
      meter,
      (frame) => {
        if (frame.type !== FrameType.DATA) return false;
        forEachRecord(frame.payload, onRecord, frame.id);
        return true;
      },
    );
  }

  /**
   * The addresses of kernel symbols, from the guest's /proc/kallsyms: one round trip. A name the
   * guest does not export maps to 0.
   */
  async symbols(names: string[]): Promise<Map<string, bigint>> {
    const out = new Map<string, bigint>();
    await this.#stream({ type: FrameType.SYMBOLS, id: 0, names }, undefined, (frame) => {
      if (frame.type !== FrameType.SYMBOLS || !("symbols" in frame)) return false;
      for (const [name, addr] of frame.symbols) if (names.includes(name)) out.set(name, addr);
      return true;
    });
    return out;
  }

  /**
   * The names of the kernel symbols that start at `addresses` (at most 64), from the guest's
   * /proc/kallsyms: one round trip. Names are what the guest says: for reports, never for
   * decisions. An address without a symbol is absent from the map.
   */
  async symbolNames(addresses: bigint[]): Promise<Map<bigint, string>> {
    const out = new Map<bigint, string>();
    await this.#stream({ type: FrameType.SYMBOLS, id: 0, addresses }, undefined, (frame) => {
      if (frame.type !== FrameType.SYMBOLS || !("at" in frame)) return false;
      for (const [addr, name] of frame.at) if (addresses.includes(addr)) out.set(addr, name);
      return true;
    });
    return out;
  }

  /** Sends a request and feeds its frames to `onData` until END; returns END's stats. */
  async #stream(
    request: Frame,
    meter: Meter | undefined,
    onData: (frame: Frame) => boolean,
  ): Promise<EndStats> {
    const end = await this.#request(request, meter, (frame) => {
      if (frame.type === FrameType.END) return true;
      if (!onData(frame)) {
        throw new AgentError(
          `Agent answered with an unexpected ${frameTypeName(frame.type)} frame`,
          0,
        );
      }
      return false;
    });
    if (end.type !== FrameType.END) throw new AgentError("Agent ended a request without END", 0);
    return end.stats;
  }

  /**
   * Sends `request` with a fresh id; every answer frame goes to `isLast`, and the request resolves
   * with the first for which it returns true. An ERROR rejects with {@linkcode AgentError}.
   */
  #request(
    request: Frame,
    meter: Meter | undefined,
    isLast: (frame: Frame) => boolean,
  ): Promise<Frame> {
    if (this.#closed) return Promise.reject(this.#closed);
    const id = this.#nextId++;
    if (this.#nextId > 0xffff_ffff) this.#nextId = 1;
    const { promise, resolve, reject } = Promise.withResolvers<Frame>();
    const timer = setTimeout(() => {
      this.#pending.delete(id);
      reject(
        new AgentError(`Agent did not answer request ${id} within ${this.#requestTimeoutMs} ms`, 0),
      );
      this.close(new AgentError("Agent stopped answering", 0));
    }, this.#requestTimeoutMs);
    const done = () => {
      clearTimeout(timer);
      this.#pending.delete(id);
    };
    this.#pending.set(id, {
      onFrame: (frame) => {
        try {
          if (frame.type === FrameType.ERROR) {
            done();
            reject(new AgentError(`Agent refused request ${id}: ${frame.message}`, frame.code));
          } else if (isLast(frame)) {
            done();
            resolve(frame);
          }
        } catch (error) {
          done();
          reject(error);
        }
      },
      fail: (error) => {
        done();
        reject(error);
      },
      meter,
    });
    this.#counters.roundTrips++;
    if (meter) meter.roundTrips++;
    this.#channel.write(encodeFrame({ ...request, id })).catch((error) => {
      this.close(new AgentError(`Cannot send to the agent: ${error.message}`, 0, { cause: error }));
    });
    return promise;
  }

  async #pump(): Promise<void> {
    const decoder = new FrameDecoder();
    try {
      for await (const chunk of this.#channel.chunks()) {
        this.#counters.bytes += chunk.length;
        decoder.push(chunk);
        for (let raw = decoder.next(); raw; raw = decoder.next()) {
          const frame = parseFrame(raw);
          const pending = this.#pending.get(frame.id);
          if (!pending) {
            throw new AgentError(
              `Agent sent a ${frameTypeName(frame.type)} frame for unknown request ${frame.id}`,
              0,
            );
          }
          if (pending.meter) pending.meter.bytes += raw.payload.length + 9;
          pending.onFrame(frame);
        }
      }
      this.close(new AgentError("Agent closed the connection", 0));
    } catch (error) {
      const reason = error instanceof FrameError || error instanceof AgentError
        ? new AgentError(`Agent broke the protocol: ${error.message}`, 0, { cause: error })
        : new AgentError(`Connection to the agent failed: ${(error as Error).message}`, 0, {
          cause: error,
        });
      this.close(reason);
    }
  }

  /** Closes the connection; pending requests fail with `reason`. Idempotent. */
  close(reason: Error = new AgentError("Client closed", 0)): void {
    if (this.#closed) return;
    this.#closed = reason;
    this.#ended.resolve(reason);
    for (const pending of [...this.#pending.values()]) pending.fail(reason);
    this.#pending.clear();
    this.#channel.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
